"""Whether the live index is intact: every file against its recorded checksum, and a seal that notices changes.

:func:`check_live` reads and hashes the live build's files (its manifest's checksums, and the fitted decisions'
own). :func:`seal` records the files' identity, size and modification time; comparing two seals costs a few
``stat`` calls, so the service does it before every question and hashes again only when something changed.
Damage that leaves size and time alone (a flipped bit on disk) is caught by the periodic hash instead.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from assistant.index import MANIFEST, SNAPSHOT, IndexBuild, live_build, sha256_file, verify_files

DECISIONS_MODEL = "decisions.pkl"
"""The fitted decisions' file in ``<build>/decisions/<key>/`` (see :mod:`assistant.decisions.store`): a pickle,
protocol 5."""
LEGACY_DECISIONS_MODEL = "decisions.joblib"
"""What a report written before it names no model file for: decisions stored with joblib, still verified as such."""
DECISIONS_REPORT = "report.json"
"""Their report beside it, which records the model file's SHA-256."""

Seal = tuple[tuple[str, int, int, int], ...]
"""(relative path, inode, size, modification time in ns) of each file; -1s for a missing one."""


@dataclass(frozen=True)
class Verdict:
    """The live build (None when there is none or its manifest is gone) and what is wrong with it."""

    build: IndexBuild | None
    problem: str | None
    """None when intact; otherwise which file failed and how (for the log: it names files)."""

    @property
    def missing(self) -> bool:
        """Nothing was ever built here."""
        return self.build is None and self.problem is None


def check_live(index_dir: Path) -> Verdict:
    """Verify the build ``index_dir/current`` points at: its manifest, its files, its fitted decisions."""
    current = index_dir / "current"
    if not current.is_symlink() and not current.exists():
        return Verdict(None, None)
    build = live_build(index_dir)
    if build is None:
        return Verdict(None, "the live build has no readable manifest")
    return Verdict(build, verify_build(build))


def read_build(path: Path) -> IndexBuild | None:
    """The build in folder ``path`` with its manifest (None when the manifest cannot be read)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return IndexBuild(path=path.resolve(), manifest=manifest) if isinstance(manifest, dict) else None


def verify_build(build: IndexBuild) -> str | None:
    """What is wrong with one build: its files, then its fitted decisions (None when intact). For the log."""
    return verify_files(build) or verify_build_decisions(build)


def verify_decisions(path: Path) -> str | None:
    """What is wrong with the fitted decisions in ``path`` against the checksum their report records; None if intact.

    Decisions fitted before checksums were recorded are taken as they are. The text is for the log.
    """
    try:
        report = json.loads((path / DECISIONS_REPORT).read_text(encoding="utf-8"))
        digest = report.get("model_sha256") if isinstance(report, dict) else None
        model = _named_model(report)
        if model not in (DECISIONS_MODEL, LEGACY_DECISIONS_MODEL):
            return f"decisions/{path.name}/{DECISIONS_REPORT} names no known model file"
        if digest is not None and sha256_file(path / str(model)) != digest:
            return f"decisions/{path.name}/{model} does not match its checksum"
    except OSError as error:
        return f"decisions/{path.name} cannot be read ({error.strerror})"
    except ValueError:
        return f"decisions/{path.name}/{DECISIONS_REPORT} is not JSON"
    return None


def decisions_model_file(path: Path) -> str:
    """The model file the report in ``path`` vouches for (the joblib file for a report that names none)."""
    try:
        report = json.loads((path / DECISIONS_REPORT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return DECISIONS_MODEL  # verify_decisions says what is wrong with it
    return _named_model(report)


def _named_model(report: object) -> str:
    """The model file a parsed report names; a report from before it named one vouches for the joblib file."""
    return str(report.get("model_file", LEGACY_DECISIONS_MODEL)) if isinstance(report, dict) else DECISIONS_MODEL


def verify_build_decisions(build: IndexBuild) -> str | None:
    """The first problem of any decisions fitted against ``build`` (None when all are intact, or there are none)."""
    for path in _decision_folders(build):
        problem = verify_decisions(path)
        if problem is not None:
            return problem
    return None


def copy_verified_decisions(previous: IndexBuild, target: Path) -> None:
    """Copy the intact decisions of ``previous`` into the build folder ``target`` (a rebuild of the same records)."""
    for path in _decision_folders(previous):
        if verify_decisions(path) is None and (path / DECISIONS_MODEL).is_file():
            shutil.copytree(path, target / "decisions" / path.name)


def _decision_folders(build: IndexBuild) -> list[Path]:
    folder = build.path / "decisions"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def build_id(build: IndexBuild | Path | str) -> str:
    """A build's id: its folder's name (the only part of its path a client ever sees)."""
    path = build.path if isinstance(build, IndexBuild) else Path(build)
    return path.name


def sealed_files(build: IndexBuild) -> list[str]:
    """The files a seal covers: the manifest, every file it lists, and the fitted decisions."""
    names = [MANIFEST, *sorted(build.manifest.get("files") or {})]
    if not build.manifest.get("files"):
        names.append(SNAPSHOT)
    for folder in _decision_folders(build):
        names += [f"decisions/{folder.name}/{DECISIONS_MODEL}", f"decisions/{folder.name}/{DECISIONS_REPORT}"]
    return names


def seal(build: IndexBuild, names: list[str] | None = None) -> Seal:
    """The identity, size and time of the build's files, and where ``current`` points (under the name ``current``)."""
    entries: list[tuple[str, int, int, int]] = []
    try:
        target = os.readlink(build.path.parent.parent / "current")
        entries.append((f"current->{target}", 0, 0, 0))
    except OSError:
        entries.append(("current->", -1, -1, -1))
    for name in names if names is not None else sealed_files(build):
        try:
            found = os.stat(build.path / name)
            entries.append((name, found.st_ino, found.st_size, found.st_mtime_ns))
        except OSError:
            entries.append((name, -1, -1, -1))
    return tuple(entries)
