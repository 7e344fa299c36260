from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from assistant.integrity import (
    DECISIONS_MODEL,
    DECISIONS_REPORT,
    LEGACY_DECISIONS_MODEL,
    decisions_model_file,
    verify_decisions,
)


def _stored(folder: Path, name: str, report: dict[str, object], content: bytes = b"fitted") -> Path:
    folder.mkdir(parents=True)
    (folder / name).write_bytes(content)
    (folder / DECISIONS_REPORT).write_text(json.dumps(report), encoding="utf-8")
    return folder


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def test_decisions_are_checked_against_the_file_their_report_names(tmp_path: Path) -> None:
    folder = _stored(tmp_path / "k", DECISIONS_MODEL, {"model_file": DECISIONS_MODEL, "model_sha256": _sha(b"fitted")})
    assert verify_decisions(folder) is None
    (folder / DECISIONS_MODEL).write_bytes(b"fitteD")
    assert verify_decisions(folder) == f"decisions/k/{DECISIONS_MODEL} does not match its checksum"


def test_decisions_stored_before_reports_named_their_file_are_checked_as_joblib_files(tmp_path: Path) -> None:
    # A build fitted by an earlier release keeps its joblib set beside the one this release fits: it must still
    # verify, or upgrading would make every live build look damaged and rebuild.
    folder = _stored(tmp_path / "old", LEGACY_DECISIONS_MODEL, {"model_sha256": _sha(b"fitted")})
    assert verify_decisions(folder) is None
    (folder / LEGACY_DECISIONS_MODEL).write_bytes(b"garbled")
    assert verify_decisions(folder) == f"decisions/old/{LEGACY_DECISIONS_MODEL} does not match its checksum"


@pytest.mark.parametrize("missing", [DECISIONS_MODEL, DECISIONS_REPORT])
def test_a_missing_decisions_file_is_damage(tmp_path: Path, missing: str) -> None:
    folder = _stored(tmp_path / "k", DECISIONS_MODEL, {"model_file": DECISIONS_MODEL, "model_sha256": _sha(b"fitted")})
    (folder / missing).unlink()
    assert verify_decisions(folder) is not None


def test_a_report_naming_a_file_of_its_own_choosing_is_damage(tmp_path: Path) -> None:
    folder = _stored(tmp_path / "k", DECISIONS_MODEL, {"model_file": "../../elsewhere", "model_sha256": _sha(b"x")})
    assert verify_decisions(folder) == f"decisions/k/{DECISIONS_REPORT} names no known model file"


def test_decisions_are_only_read_from_the_file_their_checksum_vouches_for(tmp_path: Path) -> None:
    # A legacy report vouches for the joblib file; a pickle beside it was never checked, so it is not read.
    from assistant.decisions.store import load_decisions
    from assistant.errors import IndexNotReadyError

    folder = _stored(tmp_path / "old", LEGACY_DECISIONS_MODEL, {"model_sha256": _sha(b"fitted")})
    (folder / DECISIONS_MODEL).write_bytes(b"not checked")
    assert decisions_model_file(folder) == LEGACY_DECISIONS_MODEL
    with pytest.raises(IndexNotReadyError, match="another format by an earlier release"):
        load_decisions(folder)
