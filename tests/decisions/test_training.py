"""Training: deterministic, cross-validated, stored beside the build, redone when the bank changes."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import psutil
import pytest

from assistant.assistant import Assistant
from assistant.bank import Bank, load_bank
from assistant.conversation import TurnRequest
from assistant.decisions.judge import Judge
from assistant.decisions.models import Decisions
from assistant.decisions.store import MODEL_FILE, decisions_path, ensure_decisions
from assistant.decisions.training import Trainer
from assistant.index import IndexBuild

pytestmark = pytest.mark.slow

PROBES = [
    "I'm releasing my remix with an AI-separated vocal on Spotify next month.",
    "What is a takedown notice?",
    "Does Spotify let you extract stems from its catalogue?",
    "How do I install Demucs on Linux?",
]


def _small_bank(assistant: Assistant, directory: Path, per_author: int = 40) -> Bank:
    """Every author's first ``per_author`` lines: a bank small enough to train in seconds."""
    directory.mkdir(parents=True, exist_ok=True)
    kept: dict[str, int] = {}
    lines = []
    for item in assistant.bank.items:
        if kept.get(item.author, 0) < per_author:
            kept[item.author] = kept.get(item.author, 0) + 1
            lines.append(item.model_dump_json())
    (directory / "small.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_bank(assistant.corpus, directory)


def _decide(assistant: Assistant, decisions: Decisions) -> list[tuple[object, ...]]:
    judge = Judge(decisions, assistant.table, assistant.settings.candidates)
    views = assistant._views.views([TurnRequest(p) for p in PROBES])
    features = judge.question_features(views)
    out = []
    for i, view in enumerate(views):
        judgement = judge.judge(view, features[i], [])
        out.append(
            (
                sorted(judge.triggers([view.message])[0]),
                round(judgement.coverage_probability, 9),
                tuple(judgement.ranking.top(5)),
            )
        )
    return out


@pytest.fixture(scope="module")
def small_bank_dir(assistant: Assistant, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bank")
    _small_bank(assistant, directory)
    return directory


@pytest.fixture(scope="module")
def small_bank(assistant: Assistant, small_bank_dir: Path) -> Bank:
    return load_bank(assistant.corpus, small_bank_dir)


def test_two_trainings_give_the_same_decisions(assistant: Assistant, small_bank: Bank) -> None:
    trainer = Trainer(assistant.table, assistant._views, assistant.settings.decisions, assistant.settings.candidates)
    first, second = trainer.train(small_bank), trainer.train(small_bank)
    assert first.report["thresholds"] == second.report["thresholds"]
    assert _decide(assistant, first) == _decide(assistant, second)


def test_a_training_leaves_no_worker_processes_behind(assistant: Assistant, small_bank: Bank) -> None:
    decisions = Trainer(
        assistant.table, assistant._views, assistant.settings.decisions, assistant.settings.candidates
    ).train(small_bank)
    assert assistant.settings.decisions.jobs > 1  # the folds were fitted in joblib's worker processes
    assert decisions.report["sections"]
    left = []  # joblib's worker processes; its one small resource tracker lives as long as this process
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            command = " ".join(child.cmdline())
            if child.status() != psutil.STATUS_ZOMBIE and "loky" in command and "resource_tracker" not in command:
                left.append(child.cmdline())
    assert left == []


def test_the_report_holds_cross_validated_figures_and_the_bank_sizes(assistant: Assistant) -> None:
    report = assistant.decisions_report
    assert report["bank_fingerprint"] == assistant.bank.fingerprint
    assert report["bank"]["items"]["all"] == len(assistant.bank.items)
    for key in ("situation", "sections", "ranker", "coverage", "wants_list", "thresholds"):
        assert key in report, key
    assert 0.5 < report["situation"]["micro"]["f1"] <= 1.0
    assert 0.5 < report["coverage"]["answerable_answered"] <= 1.0
    assert set(report["thresholds"]) >= {"coverage", "ranker.support", "situation.commercial_release"}


def test_a_changed_bank_is_trained_anew_beside_the_same_build(
    assistant: Assistant, small_bank: Bank, small_bank_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    build = assistant._build
    path = decisions_path(build, small_bank, assistant.settings)
    assert not path.exists()
    with caplog.at_level(logging.INFO, logger="assistant.decisions"):
        _, report = ensure_decisions(build, small_bank, assistant.settings, assistant.table, assistant._views)
    assert path.is_dir() and json.loads((path / "report.json").read_text())["key"] == report["key"]
    # A fit at a server's start is said in its log, with what to run ahead of serving.
    said = [record.getMessage() for record in caplog.records if record.name == "assistant.decisions"]
    assert any("Fitting the decisions" in line and "'assistant index'" in line for line in said), said
    assert any(line.startswith("Decisions fitted in") and report["key"] in line for line in said), said
    changed_dir = tmp_path / "changed"
    changed_dir.mkdir()
    lines = (small_bank_dir / "small.jsonl").read_text().splitlines()
    (changed_dir / "small.jsonl").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    changed = load_bank(assistant.corpus, changed_dir)
    assert changed.fingerprint != small_bank.fingerprint
    changed_path = decisions_path(build, changed, assistant.settings)
    assert changed_path != path and not changed_path.exists()
    ensure_decisions(build, changed, assistant.settings, assistant.table, assistant._views)
    assert changed_path.is_dir()
    # The unchanged bank's decisions are reused, not retrained.
    before = (path / MODEL_FILE).stat().st_mtime_ns
    ensure_decisions(build, small_bank, assistant.settings, assistant.table, assistant._views)
    assert (path / MODEL_FILE).stat().st_mtime_ns == before


def test_a_rebuild_with_the_same_records_copies_its_decisions_instead_of_refitting(
    assistant: Assistant, small_bank: Bank, monkeypatch: pytest.MonkeyPatch
) -> None:
    build = assistant._build
    fitted, report = ensure_decisions(build, small_bank, assistant.settings, assistant.table, assistant._views)
    twin_path = build.path.parent / f"{build.path.name}-twin"
    shutil.copytree(build.path, twin_path, ignore=shutil.ignore_patterns("decisions"))
    twin = IndexBuild(path=twin_path, manifest=build.manifest)
    try:

        def refit(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("the decisions were refitted, not copied from the cache")

        monkeypatch.setattr(Trainer, "train", refit)
        settings, table, views = assistant.settings, assistant.table, assistant._views
        copied, copied_report = ensure_decisions(twin, small_bank, settings, table, views)
        assert copied_report == report
        assert (decisions_path(twin, small_bank, assistant.settings) / MODEL_FILE).is_file()
        assert copied.report == fitted.report
        with pytest.raises(AssertionError, match="refitted"):  # --retrain still refits
            ensure_decisions(twin, small_bank, settings, table, views, force=True)
    finally:
        shutil.rmtree(twin_path)


def test_probabilities_are_probabilities(assistant: Assistant) -> None:
    view = assistant._views.views([TurnRequest("Is an isolated vocal a derivative work?")])[0]
    judge = Judge(assistant.decisions, assistant.table, assistant.settings.candidates)
    judgement = judge.judge(view, judge.question_features([view]), [])
    assert np.all((judgement.ranking.probabilities >= 0) & (judgement.ranking.probabilities <= 1))
    assert np.all(np.diff(judgement.ranking.probabilities) <= 0)
    assert judgement.section_probs.sum() == pytest.approx(1.0)
