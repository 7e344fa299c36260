"""Fitted decisions on disk, beside the index build they were fitted against.

``<build>/decisions/<key>/`` holds ``decisions.pkl`` and ``report.json`` (the cross-validation figures, the
fitted thresholds and the bank's size per label). The key hashes everything training depends on besides the
build itself: the bank's fingerprint, the trainer's version, the decision settings, the candidate depth and
the model file's format. (Not scikit-learn's version: the models are stored frozen, :mod:`assistant.frozen`, and
read without it; the report records the version that fitted them.) A changed bank therefore gets its own folder and is
trained on first use; the build's vectors are reused. The folder is written under a temporary name and renamed
into place, so a reader never sees half a model. ``report.json`` records the model file's name and SHA-256,
and a model that does not match it is refused. (Sets stored before were joblib files, ``decisions.joblib``;
their key differs, so this release fits its own set once beside them.)

A copy of each fitted set is also kept under ``<index_dir>/models/decisions/<key>-<records>/``, where
``records`` hashes the build's snapshot contents (every record's text, metadata and vector). A rebuild whose
records come out the same (``assistant index --force`` with the vector cache, or a rebuild after damage)
copies the decisions it would otherwise spend about a minute refitting. Only the newest
:data:`CACHE_KEEP` sets are kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from assistant.bank import Bank
from assistant.conversation import ViewBuilder
from assistant.decisions.models import TRAINER_VERSION, Decisions
from assistant.errors import IndexNotReadyError
from assistant.index import SNAPSHOT, IndexBuild, build_lock, sha256_file
from assistant.integrity import DECISIONS_MODEL, DECISIONS_REPORT, decisions_model_file, verify_decisions
from assistant.requests_filter import fingerprint as request_data_fingerprint
from assistant.requests_filter import load_messages
from assistant.sentences import SentenceTable
from assistant.settings import Settings

MODEL_FILE = DECISIONS_MODEL
REPORT_FILE = DECISIONS_REPORT
CACHE_KEEP = 4
"""Fitted sets kept in the decisions cache: the live build's and a few earlier corpora's or banks'."""

log = logging.getLogger("assistant.decisions")


def decisions_key(bank: Bank, settings: Settings) -> str:
    """What a fitted set of decisions depends on, besides the build, as a short hash."""
    material = json.dumps(
        {
            "bank": bank.fingerprint,
            "requests": request_data_fingerprint(load_messages()),
            "trainer": TRAINER_VERSION,
            "settings": settings.decisions.model_dump(mode="json"),
            "candidates": settings.candidates,
            "file": MODEL_FILE,
        },
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def decisions_path(build: IndexBuild, bank: Bank, settings: Settings) -> Path:
    """Where the decisions for this build, bank and settings live."""
    return build.path / "decisions" / decisions_key(bank, settings)


def records_fingerprint(build: IndexBuild) -> str | None:
    """A hash of the build's snapshot contents (not its file: the archive's timestamps differ per build)."""
    snapshot = build.path / SNAPSHOT
    if not snapshot.is_file():
        return None  # a build from before snapshots: nothing to key a cache on
    digest = hashlib.sha256()
    with np.load(snapshot, allow_pickle=False) as arrays:
        for name in sorted(arrays.files):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()[:16]


def _cache_path(build: IndexBuild, key: str, settings: Settings) -> Path | None:
    records = records_fingerprint(build)
    return None if records is None else settings.index_dir / "models" / "decisions" / f"{key}-{records}"


def _install(source: Path, target: Path) -> None:
    """Copy a fitted set's folder to ``target`` under a temporary name, then rename it into place."""
    staging = target.parent / f".{target.name}-{uuid.uuid4().hex[:8]}"
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copytree(source, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prune_cache(folder: Path) -> None:
    entries = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=os.path.getmtime)
    for stale in entries[:-CACHE_KEEP]:
        shutil.rmtree(stale, ignore_errors=True)


def load_decisions(path: Path) -> Decisions:
    """Fitted decisions from their folder, once they match the checksum their report records."""
    problem = verify_decisions(path)
    if problem is not None:
        raise IndexNotReadyError(
            "The fitted decisions are damaged: they do not match the checksum recorded when they were fitted. "
            "Run 'assistant index --force'."
        )
    if decisions_model_file(path) != MODEL_FILE:  # the checksum vouched for another file than the one read here
        raise IndexNotReadyError(
            f"The fitted decisions in {path.name} were stored in another format by an earlier release. "
            "Run 'assistant index --retrain'."
        )
    try:
        # The standard library's unpickler, in C: joblib's is written in Python and took 0.2-0.3 s of every
        # server start over these 20 MB, against about 0.02 s (scripts/bench_assistant.py, cold start).
        with (path / MODEL_FILE).open("rb") as stream:
            decisions = pickle.load(stream)
    except (OSError, EOFError, ValueError, AttributeError, ModuleNotFoundError, pickle.UnpicklingError) as error:
        raise IndexNotReadyError(
            f"The fitted decisions in {path} cannot be read ({error}). Run 'assistant index --force'."
        ) from None
    if not isinstance(decisions, Decisions):
        raise IndexNotReadyError(f"{path / MODEL_FILE} holds no decisions. Run 'assistant index --force'.")
    return decisions


def ensure_decisions(
    build: IndexBuild,
    bank: Bank,
    settings: Settings,
    table: SentenceTable,
    views: ViewBuilder,
    progress: Callable[[str], None] | None = None,
    force: bool = False,
) -> tuple[Decisions, dict[str, Any]]:
    """The decisions for this build and bank, trained first when there are none yet (or ``force``)."""
    path = decisions_path(build, bank, settings)
    if not force and (path / MODEL_FILE).is_file():
        return load_decisions(path), json.loads((path / REPORT_FILE).read_text(encoding="utf-8"))
    with build_lock(settings.index_dir, settings.build_lock_timeout):
        if not force and (path / MODEL_FILE).is_file():
            return load_decisions(path), json.loads((path / REPORT_FILE).read_text(encoding="utf-8"))
        cached = _cache_path(build, path.name, settings)
        if not force and cached is not None and (cached / MODEL_FILE).is_file():
            with contextlib.suppress(IndexNotReadyError, OSError, json.JSONDecodeError):
                decisions, report = load_decisions(cached), json.loads((cached / REPORT_FILE).read_text("utf-8"))
                _install(cached, path)
                return decisions, report
        # A server started on a build without decisions for its bank fits them here, before it is ready: say so in
        # its log, where nothing else would explain a minute of silence and a gigabyte of memory.
        log.info(
            "Fitting the decisions for build %s and this question bank (%d messages); none are stored yet. "
            "'assistant index' fits them ahead of serving.",
            build.path.name,
            len(bank.items),
        )
        import sklearn

        from assistant.decisions.training import Trainer

        started = time.perf_counter()
        decisions = Trainer(table, views, settings.decisions, settings.candidates, progress).train(bank)
        log.info("Decisions fitted in %.0f s (key %s).", time.perf_counter() - started, path.name)
        report = {
            "key": path.name,
            "bank_fingerprint": bank.fingerprint,
            "trainer_version": TRAINER_VERSION,
            "sklearn": sklearn.__version__,
            "settings": settings.decisions.model_dump(mode="json"),
            **decisions.report,
        }
        staging = path.parent / f".{path.name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        try:
            with (staging / MODEL_FILE).open("wb") as stream:
                pickle.dump(decisions, stream, protocol=5)
            report["model_file"] = MODEL_FILE
            report["model_sha256"] = sha256_file(staging / MODEL_FILE)
            (staging / REPORT_FILE).write_text(json.dumps(report, indent=2), encoding="utf-8")
            if path.exists():
                shutil.rmtree(path)
            os.replace(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if cached is not None:
            _install(path, cached)
            _prune_cache(cached.parent)
        return decisions, report
