"""Run the assistant over a dataset, write metrics, per-case results and the report, and apply the gate.

The run uses the same :class:`~assistant.assistant.Assistant` the UI uses, so a
figure in the report is a figure users get. Outputs are written to a temporary
folder next to the output folder and only then moved into place, so an
interrupted run never leaves a half-written report beside fresh metrics.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assistant.chain import Turn
from assistant.corpus import Corpus, load_corpus
from assistant.errors import AssistantError
from assistant.evaluation.dataset import EvalCase, check_against_corpus, load_dataset
from assistant.evaluation.metrics import (
    HIT_AT,
    RETRIEVERS,
    SUPPORT_THRESHOLD,
    CaseOutcome,
    CaseScore,
    aggregate,
    by_category,
    escalation_confusion,
    scope_confusion,
    score_case,
)
from assistant.evaluation.report import HEADLINE, render_report
from assistant.retrieval import distinct_sections
from assistant.schemas import Answer
from assistant.settings import PROJECT_ROOT, Settings

DEFAULT_THRESHOLDS = PROJECT_ROOT / "evals" / "thresholds.yaml"
ASSISTANT_DEPTHS = (2, 5)
"""Chunks asked of the assistant's ``retrieve()``, per wanted section: 2·k first (its reranked
shortlist, as ``ask()`` sees it), 5·k only when that holds fewer than k distinct sections."""
BASELINE_DEPTH = 5
"""Chunks asked of each baseline per wanted section, so k distinct sections are nearly always found."""

PLAIN_PROGRESS_EVERY = 25
"""Without a terminal (CI), print a progress line every this many cases."""

MetricValue = float | int | None


class AssistantLike(Protocol):
    """The part of :class:`~assistant.assistant.Assistant` the eval needs."""

    @property
    def corpus(self) -> Corpus:
        """The loaded corpus quotes are checked against."""
        ...

    def run(self, question: str, history: list[dict[str, str]]) -> Turn:
        """One question through the whole chain: the reply a user would get, and the context it came from."""
        ...

    def ranked_passages(self, turn: Turn, k: int) -> list[Document]:
        """The ``k`` best passages of a turn's own ranking (no second retrieval)."""
        ...

    def baseline_retrievers(self) -> Mapping[str, BaseRetriever]:
        """Single-method retrievers over the same chunks, keyed 'dense' and 'bm25'."""
        ...


class ThresholdsError(AssistantError):
    """The thresholds file is missing or malformed."""


@dataclass(frozen=True)
class Thresholds:
    """Floors (``min``) and ceilings (``max``) on keys of ``metrics.json``'s ``overall``.

    ``targets`` are floors the assistant is meant to reach but does not yet: every run
    reports them, met or not, and only ``min``/``max`` gate a change.
    """

    minimum: dict[str, float]
    maximum: dict[str, float]
    targets: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GateFailure:
    """One metric outside its threshold."""

    metric: str
    value: float | None
    bound: str
    threshold: float

    def __str__(self) -> str:
        shown = "not computable on this dataset" if self.value is None else f"{self.value:.3f}"
        relation = "at least" if self.bound == "min" else "at most"
        return f"{self.metric} = {shown}; needs {relation} {self.threshold:g}"


def load_thresholds(path: Path) -> Thresholds:
    """Read the one thresholds file (YAML with ``min:`` and ``max:`` mappings of metric key to number)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ThresholdsError(f"Thresholds file {path} does not exist; restore evals/thresholds.yaml.") from None
    except yaml.YAMLError as error:
        raise ThresholdsError(f"Thresholds file {path} does not parse: {error}") from None
    if not isinstance(data, dict) or set(data) - {"min", "max", "targets"}:
        raise ThresholdsError(f"{path}: expected only 'min:', 'max:' and 'targets:' mappings of metric key to number.")
    parsed: dict[str, dict[str, float]] = {}
    for bound in ("min", "max", "targets"):
        section = data.get(bound) or {}
        if not isinstance(section, dict):
            raise ThresholdsError(f"{path}: '{bound}' must map metric keys to numbers.")
        for key, value in section.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ThresholdsError(f"{path}: {bound}.{key} must be a number, got {value!r}.")
        parsed[bound] = {str(key): float(value) for key, value in section.items()}
    return Thresholds(minimum=parsed["min"], maximum=parsed["max"], targets=parsed["targets"])


def unmet_targets(overall: dict[str, MetricValue], thresholds: Thresholds) -> list[GateFailure]:
    """Targets the run falls short of (reported, not gating): the gate's check with targets as floors."""
    return check_gate(overall, Thresholds(minimum=thresholds.targets, maximum={}))


def check_gate(overall: dict[str, MetricValue], thresholds: Thresholds) -> list[GateFailure]:
    """Every metric below its floor or above its ceiling; a metric that is absent or not computable fails."""
    failures: list[GateFailure] = []
    for bound, limits in (("min", thresholds.minimum), ("max", thresholds.maximum)):
        for key, threshold in limits.items():
            value = overall.get(key)
            if value is None:
                failures.append(GateFailure(key, None, bound, threshold))
            elif (bound == "min" and value < threshold) or (bound == "max" and value > threshold):
                failures.append(GateFailure(key, float(value), bound, threshold))
    return failures


def _fetch(retriever: BaseRetriever, question: str, depth: int) -> list[Document]:
    return retriever.invoke(question, k=depth)


def run_case(assistant: AssistantLike, case: EvalCase, k: int, baselines: Mapping[str, BaseRetriever]) -> CaseOutcome:
    """Ask one question (timed) and record each retriever's ranked sections for it.

    An exception is recorded against the case rather than ending the run, so one
    crashing question shows up in the report beside every other result.
    """
    history = [message.model_dump() for message in case.history]
    error: str | None = None
    started = time.perf_counter()
    turn: Turn | None = None
    try:
        turn = assistant.run(case.question, history=history)
        answer = turn.answer or Answer(answer="", answered=False, disclaimer="")
    except Exception as exception:  # reported per case and counted in cases.errors
        error = f"{type(exception).__name__}: {exception}"
        answer = Answer(answer="", answered=False, disclaimer="")
    latency = time.perf_counter() - started
    # The assistant's ranking is read from the same run that answered: no second retrieval.
    ranked = turn
    fetchers: dict[str, Callable[[int], list[Document]]] = {
        "assistant": lambda depth: [] if ranked is None else assistant.ranked_passages(ranked, depth)
    }
    depths: dict[str, Sequence[int]] = {"assistant": [k * factor for factor in ASSISTANT_DEPTHS]}
    for name, retriever in baselines.items():
        fetchers[name] = functools.partial(_fetch, retriever, case.question)
        depths[name] = [k * BASELINE_DEPTH]
    rankings: dict[str, list[str]] = {}
    for name, fetch in fetchers.items():
        try:
            for depth in depths[name]:
                rankings[name] = distinct_sections(fetch(depth), k)
                if len(rankings[name]) >= k:
                    break
        except Exception as exception:  # a broken retriever is reported, not fatal
            error = error or f"{type(exception).__name__} in {name} retrieval: {exception}"
            rankings[name] = []
    return CaseOutcome(case=case, answer=answer, latency_s=latency, rankings=rankings, error=error)


def run_cases(assistant: AssistantLike, cases: Sequence[EvalCase], k: int, console: Console) -> list[CaseOutcome]:
    """Every case through the assistant, with a progress bar."""
    baselines = {name: retriever for name, retriever in assistant.baseline_retrievers().items() if name in RETRIEVERS}
    assistant.run("warm-up", history=[])  # one-time lazy loads would otherwise inflate the first latency
    outcomes: list[CaseOutcome] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    started = time.perf_counter()
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("Asking", total=len(cases))
        for done, case in enumerate(cases, start=1):
            progress.update(task, description=f"Asking {case.id}")
            outcomes.append(run_case(assistant, case, k, baselines))
            progress.advance(task)
            if not console.is_terminal and (done % PLAIN_PROGRESS_EVERY == 0 or done == len(cases)):
                # A CI log shows no live bar; a line now and then tells it the run is alive.
                console.print(f"Asked {done}/{len(cases)} ({time.perf_counter() - started:.0f} s)")
    return outcomes


def result_record(score: CaseScore) -> dict[str, Any]:
    """One line of ``results.jsonl``: the question, what was expected, the reply and what failed."""
    outcome = score.outcome
    case = outcome.case
    return {
        "id": case.id,
        "line": case.line,
        "category": case.category,
        "question": case.question,
        "history": [message.model_dump() for message in case.history],
        "expected": {
            "answerable": case.answerable,
            "expected_sections": case.expected_sections,
            "must_escalate": case.must_escalate,
            "must_include": case.must_include,
        },
        "answer": outcome.answer.model_dump(mode="json"),
        "latency_s": round(outcome.latency_s, 4),
        "error": outcome.error,
        "retrieval": outcome.rankings,
        "passed": score.passed,
        "failed_checks": [{"check": failure.check, "detail": failure.detail} for failure in score.failures],
    }


def _rounded(metrics: dict[str, MetricValue]) -> dict[str, MetricValue]:
    return {key: round(value, 4) if isinstance(value, float) else value for key, value in metrics.items()}


def metrics_document(
    scores: Sequence[CaseScore],
    dataset: Path,
    k: int,
    thresholds: Thresholds,
    run: dict[str, Any],
    decisions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything ``metrics.json`` holds: overall and per-category figures, confusion tables and the gate."""
    overall = aggregate(scores, k)
    failures = check_gate(overall, thresholds)
    digest = hashlib.sha256(dataset.read_bytes()).hexdigest() if dataset.is_file() else None
    return {
        "dataset": {"path": str(dataset), "sha256": digest, "cases": len(scores)},
        "run": {**run, "k": k, "hit_at": HIT_AT, "support_threshold": SUPPORT_THRESHOLD},
        "overall": _rounded(overall),
        "by_category": {name: _rounded(values) for name, values in by_category(scores, k).items()},
        "escalation_confusion": escalation_confusion(scores),
        "scope_confusion": scope_confusion(scores),
        "decisions": decisions or {},
        "thresholds": {"min": thresholds.minimum, "max": thresholds.maximum, "targets": thresholds.targets},
        "gate": {"passed": not failures, "failures": [{**vars(f), "message": str(f)} for f in failures]},
        "targets_unmet": [{**vars(f), "message": str(f)} for f in unmet_targets(overall, thresholds)],
    }


def write_outputs(out_dir: Path, metrics: dict[str, Any], results: list[dict[str, Any]]) -> None:
    """Write the three files into a temp folder, then move each into ``out_dir`` (each move atomic)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        (staging / "results.jsonl").write_text(
            "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in results), encoding="utf-8"
        )
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", "utf-8")
        (staging / "report.html").write_text(render_report(metrics, results), encoding="utf-8")
        for name in ("results.jsonl", "metrics.json", "report.html"):
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _summary_table(metrics: dict[str, Any]) -> Table:
    overall, limits = metrics["overall"], metrics["thresholds"]
    failing = {failure["metric"] for failure in metrics["gate"]["failures"]}
    table = Table(title="Eval summary", show_lines=False)
    for column in ("Metric", "Value", "Threshold", ""):
        table.add_column(column)
    keys = [key for key, _ in HEADLINE] + [key for key in [*limits["min"], *limits["max"]] if key not in dict(HEADLINE)]
    for key in keys:
        value = overall.get(key)
        threshold = (f"≥ {limits['min'][key]:g}" if key in limits["min"] else "") or (
            f"≤ {limits['max'][key]:g}" if key in limits["max"] else ""
        )
        status = "[red]FAIL[/]" if key in failing else ("[green]ok[/]" if threshold else "")
        shown = "n/a" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))
        table.add_row(key, shown, threshold, status)
    return table


def run_eval_command(
    settings: Settings,
    dataset: Path,
    out_dir: Path,
    k: int = 10,
    gate: bool = False,
    thresholds_path: Path = DEFAULT_THRESHOLDS,
    assistant: AssistantLike | None = None,
    console: Console | None = None,
) -> int:
    """``assistant eval``: 0 when done (and the gate, if asked for, passed), 1 when the gate failed."""
    console = console or Console(stderr=True)
    if not 1 <= k <= 50:
        raise AssistantError(f"--k must be between 1 and 50, got {k}.")
    started = time.time()
    cases = load_dataset(dataset)
    thresholds = load_thresholds(thresholds_path)
    corpus = assistant.corpus if assistant else load_corpus(settings.corpus_dir, settings.article_url)
    cases = check_against_corpus(cases, corpus, dataset)
    console.print(f"Loaded {len(cases)} cases from {dataset}.")
    if assistant is None:
        from assistant.assistant import Assistant

        console.print("Loading the model and opening the index (the first build takes about two minutes)…")
        with console.status("Loading…"):
            loaded: AssistantLike = Assistant(settings)
    else:
        loaded = assistant
    outcomes = run_cases(loaded, cases, k, console)
    scores = [score_case(outcome, loaded.corpus) for outcome in outcomes]
    run: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 2),
    }
    metrics = metrics_document(scores, dataset, k, thresholds, run, getattr(loaded, "decisions_report", None))
    write_outputs(out_dir, metrics, [result_record(score) for score in scores])

    console.print(_summary_table(metrics))
    failed = sum(not score.passed for score in scores)
    errors = [score.outcome for score in scores if score.outcome.error]
    if errors:
        console.print(
            f"[bold red]{len(errors)} case(s) raised an exception[/], e.g. {errors[0].case.id}: {errors[0].error}"
        )
    console.print(f"{len(scores) - failed}/{len(scores)} cases passed every check. Report: {out_dir / 'report.html'}")
    for target in metrics["targets_unmet"]:
        console.print(f"[bold yellow]Target not yet met[/] (reported, not gating): {target['message']}")
    failures = metrics["gate"]["failures"]
    if not gate:
        return 0
    if failures:
        console.print(f"[bold red]Gate failed[/] ({thresholds_path}):")
        for failure in failures:
            console.print(f"  • {failure['message']}")
        return 1
    console.print(f"[bold green]Gate passed[/]: every metric meets {thresholds_path}.")
    return 0
