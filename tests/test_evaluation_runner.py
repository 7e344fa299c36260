from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import Field
from rich.console import Console
from typer.testing import CliRunner

from assistant.chain import Turn
from assistant.corpus import Corpus
from assistant.errors import AssistantError, DatasetError
from assistant.evaluation import runner
from assistant.evaluation.runner import (
    Thresholds,
    ThresholdsError,
    check_gate,
    distinct_sections,
    load_thresholds,
    run_eval_command,
    unmet_targets,
)
from assistant.schemas import Answer, Citation, Escalation
from assistant.settings import Settings

WHAT = "What Stem Separation Actually Does"
REPRODUCTION = "Even if the copy is temporary and exists only during processing, it is a reproduction."
DATASET = [
    {
        "id": "copy",
        "question": "Is processing a copy?",
        "expected_sections": [WHAT],
        "must_include": ["reproduction"],
        "category": "article",
    },
    {"id": "bread", "question": "Banana bread recipe?", "answerable": False, "category": "out_of_scope"},
    {
        "user_input": "I plan to release it commercially.",
        "id": "release",
        "must_escalate": ["commercial_release"],
        "answerable": False,
        "category": "escalation",
    },
]


def doc(section: str) -> Document:
    return Document(page_content="text", metadata={"section": section, "source_id": "article"})


class FakeRetriever(BaseRetriever):
    """A LangChain retriever answering from a fixed list of sections (the real interface, scripted ranks)."""

    sections: list[str]
    calls: list[tuple[str, int]] = Field(default_factory=list)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int = 4
    ) -> list[Document]:
        self.calls.append((query, k))
        return [doc(section) for section in self.sections][:k]


class FakeAssistant:
    """The Assistant surface the runner uses, answering from a script."""

    def __init__(self, corpus: Corpus, escalate: bool = True) -> None:
        self._corpus = corpus
        self.escalate = escalate
        self.asked: list[tuple[str, list[dict[str, str]]]] = []
        self.retrieved: list[int] = []
        self.baselines = {
            "dense": FakeRetriever(sections=["Introduction", WHAT]),
            "bm25": FakeRetriever(sections=["Introduction"]),
        }

    @property
    def corpus(self) -> Corpus:
        return self._corpus

    def ask(self, question: str, history: list[dict[str, str]]) -> Answer:
        self.asked.append((question, history))
        disclaimer = self._corpus.disclaimer
        if "copy" in question:
            citation = Citation(
                n=1, source_id="article", source_title="Article", section=WHAT, url=None, quote=REPRODUCTION
            )
            text = f"{REPRODUCTION} [1]"
            return Answer(
                answer=text,
                answered=True,
                citations=[citation],
                disclaimer=disclaimer,
                rendered=f"{text}\n{disclaimer}",
            )
        escalations = (
            [Escalation(trigger="commercial_release", text="x")] if self.escalate and "release" in question else []
        )
        return Answer(
            answer="The sources do not cover <that>.",
            answered=False,
            escalations=escalations,
            disclaimer=disclaimer,
            rendered=disclaimer,
        )

    def run(self, question: str, history: list[dict[str, str]]) -> Turn:
        return Turn(question=question, history=history, answer=self.ask(question, history), finished=True)

    def ranked_passages(self, turn: Turn, k: int) -> list[Document]:
        assert turn.answer is not None, "the runner reads passages of a turn that has been answered"
        self.retrieved.append(k)
        return [doc(WHAT), doc(WHAT), doc("Introduction")][:k]

    def baseline_retrievers(self) -> dict[str, FakeRetriever]:
        return self.baselines


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in DATASET))
    return path


@pytest.fixture
def thresholds(tmp_path: Path) -> Path:
    path = tmp_path / "thresholds.yaml"
    path.write_text("min:\n  citations.section_hit@3: 0.9\n  escalation.recall: 0.95\nmax:\n  latency.p95_s: 5\n")
    return path


def run(settings: Settings, corpus: Corpus, dataset: Path, out: Path, thresholds: Path, **kw: Any) -> int:
    """Run with a fake assistant; the console output is kept in console.txt beside the output folder."""
    fake = kw.pop("assistant", None) or FakeAssistant(corpus)
    buffer = io.StringIO()
    try:
        return run_eval_command(
            settings,
            dataset=dataset,
            out_dir=out,
            k=3,
            thresholds_path=thresholds,
            assistant=fake,
            console=Console(file=buffer, width=200),
            **kw,
        )
    finally:
        (out.parent / "console.txt").write_text(buffer.getvalue())


def test_run_writes_metrics_results_and_report(
    settings: Settings, corpus: Corpus, dataset: Path, thresholds: Path, tmp_path: Path
) -> None:
    fake = FakeAssistant(corpus)
    out = tmp_path / "out"
    assert run(settings, corpus, dataset, out, thresholds, assistant=fake, gate=True) == 0
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "results.jsonl"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out-")]  # staging folder removed

    metrics = json.loads((out / "metrics.json").read_text())
    overall = metrics["overall"]
    assert overall["cases"] == 3
    assert overall["citations.section_hit@3"] == 1.0
    assert overall["escalation.recall"] == 1.0
    assert overall["retrieval.assistant.hit@1"] == 1.0
    assert overall["retrieval.dense.hit@1"] == 0.0
    assert overall["retrieval.dense.hit@2"] == 1.0
    assert overall["retrieval.bm25.hit@3"] == 0.0
    assert set(metrics["by_category"]) == {"article", "escalation", "out_of_scope"}
    assert metrics["gate"] == {"passed": True, "failures": []}
    assert metrics["thresholds"]["max"] == {"latency.p95_s": 5.0}

    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in results] == ["copy", "bread", "release"]
    assert results[0]["retrieval"] == {
        "assistant": [WHAT, "Introduction"],
        "dense": ["Introduction", WHAT],
        "bm25": ["Introduction"],
    }
    assert results[0]["answer"]["citations"][0]["quote"] == REPRODUCTION
    assert results[2]["expected"]["must_escalate"] == ["commercial_release"]
    assert all(r["passed"] for r in results)
    assert "The sources do not cover &lt;that&gt;." in (out / "report.html").read_text()

    # warm-up first, then every case with its history as plain dicts; baselines asked for k * 5 chunks
    assert [q for q, _ in fake.asked] == [
        "warm-up",
        "Is processing a copy?",
        "Banana bread recipe?",
        DATASET[2]["user_input"],
    ]
    assert fake.baselines["dense"].calls[0] == ("Is processing a copy?", 15)
    console = (tmp_path / "console.txt").read_text()
    assert "Asked 3/3" in console  # plain progress lines when no terminal shows a live bar
    assert "3/3 cases passed every check" in console
    # the assistant's shortlist (2k) first; 5k only because it held fewer than k distinct sections
    assert fake.retrieved[:2] == [6, 15]


def test_gate_failure_returns_1_and_names_the_metric(
    settings: Settings, corpus: Corpus, dataset: Path, thresholds: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code = run(settings, corpus, dataset, out, thresholds, assistant=FakeAssistant(corpus, escalate=False), gate=True)
    assert code == 1
    console = (tmp_path / "console.txt").read_text()
    assert "Gate failed" in console
    assert "escalation.recall = 0.000; needs at least 0.95" in console
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f["metric"] for f in metrics["gate"]["failures"]] == ["escalation.recall"]
    assert "escalation.recall" in (out / "report.html").read_text()


def test_without_gate_a_failing_metric_still_exits_0(
    settings: Settings, corpus: Corpus, dataset: Path, thresholds: Path, tmp_path: Path
) -> None:
    fake = FakeAssistant(corpus, escalate=False)
    assert run(settings, corpus, dataset, tmp_path / "out", thresholds, assistant=fake) == 0


def test_a_bad_dataset_line_stops_before_anything_is_asked_or_written(
    settings: Settings, corpus: Corpus, thresholds: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "ok"}) + "\n" + json.dumps({"question": "x", "history": "no"}) + "\n")
    fake = FakeAssistant(corpus)
    with pytest.raises(DatasetError, match=r"line 2: field 'history'"):
        run(settings, corpus, bad, tmp_path / "out", thresholds, assistant=fake)
    assert fake.asked == []
    assert not (tmp_path / "out").exists()


def test_a_failed_write_leaves_earlier_outputs_untouched(
    settings: Settings,
    corpus: Corpus,
    dataset: Path,
    thresholds: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out = tmp_path / "out"
    run(settings, corpus, dataset, out, thresholds)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(metrics: dict[str, Any], results: list[dict[str, Any]]) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(runner, "render_report", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        run(settings, corpus, dataset, out, thresholds)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out-")) == []


class CrashingAssistant(FakeAssistant):
    def ask(self, question: str, history: list[dict[str, str]]) -> Answer:
        if "Banana" in question:
            raise ValueError("boom")
        return super().ask(question, history)


def test_a_crashing_case_is_recorded_and_the_run_goes_on(
    settings: Settings, corpus: Corpus, dataset: Path, thresholds: Path, tmp_path: Path
) -> None:
    thresholds.write_text("max:\n  cases.errors: 0\n")
    out = tmp_path / "out"
    assert run(settings, corpus, dataset, out, thresholds, assistant=CrashingAssistant(corpus), gate=True) == 1
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["error"] for r in results] == [None, "ValueError: boom", None]
    assert results[1]["failed_checks"][0] == {"check": "error", "detail": "the assistant raised ValueError: boom"}
    assert json.loads((out / "metrics.json").read_text())["overall"]["cases.errors"] == 1
    assert "1 case(s) raised an exception" in (tmp_path / "console.txt").read_text()


def test_k_out_of_range_is_an_error(
    settings: Settings, corpus: Corpus, dataset: Path, thresholds: Path, tmp_path: Path
) -> None:
    with pytest.raises(AssistantError, match="--k must be between 1 and 50"):
        run_eval_command(settings, dataset=dataset, out_dir=tmp_path / "o", k=0, thresholds_path=thresholds)


def test_distinct_sections_keeps_first_rank_of_each_section() -> None:
    docs = [doc("A"), doc("B"), doc("A"), doc("C"), doc("D")]
    assert distinct_sections(docs, 3) == ["A", "B", "C"]


def test_check_gate_reports_floors_ceilings_and_uncomputable_metrics() -> None:
    limits = Thresholds(minimum={"a": 0.9, "b": 0.5, "missing": 1.0}, maximum={"latency": 1.0})
    failures = check_gate({"a": 0.95, "b": 0.4, "latency": 1.5}, limits)
    assert [str(f) for f in failures] == [
        "b = 0.400; needs at least 0.5",
        "missing = not computable on this dataset; needs at least 1",
        "latency = 1.500; needs at most 1",
    ]
    assert check_gate({"a": 0.9, "b": 0.5, "missing": 1.0, "latency": 1.0}, limits) == []


def test_load_thresholds_rejects_malformed_files(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("min:\n  a: high\n")
    with pytest.raises(ThresholdsError, match=r"min\.a must be a number"):
        load_thresholds(path)
    path.write_text("minimum:\n  a: 1\n")
    with pytest.raises(ThresholdsError, match="only 'min:', 'max:' and 'targets:'"):
        load_thresholds(path)


def test_targets_are_reported_but_do_not_gate(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("min:\n  a: 0.5\ntargets:\n  a: 0.8\n")
    limits = load_thresholds(path)
    assert limits.targets == {"a": 0.8}
    assert check_gate({"a": 0.6}, limits) == []
    assert [str(t) for t in unmet_targets({"a": 0.6}, limits)] == ["a = 0.600; needs at least 0.8"]
    assert unmet_targets({"a": 0.85}, limits) == []
    with pytest.raises(ThresholdsError, match="does not exist"):
        load_thresholds(tmp_path / "absent.yaml")


def test_project_thresholds_keep_the_agreed_floors() -> None:
    limits = load_thresholds(runner.DEFAULT_THRESHOLDS)
    floors = {
        "citations.section_hit@3": 0.90,
        "escalation.recall": 0.95,
        "escalation.precision": 0.95,
        "scope.unanswerable_answered_false": 0.90,
        "scope.answerable_answered_true": 0.95,
        "guardrails.disclaimer_present": 1.0,
        "answer.must_include": 0.80,
        "citations.quote_exactness": 1.0,
    }
    for key, floor in floors.items():
        # Each agreed floor gates at full height, or, while not met yet, is reported as a target at full height.
        assert limits.minimum.get(key, 0.0) >= floor or limits.targets.get(key, 0.0) >= floor, key


def test_cli_eval_reports_a_bad_line_and_exits_2(tmp_path: Path) -> None:
    from assistant.cli import app

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "a", "question": "q", "answerable": "maybe"}) + "\n")
    result = CliRunner().invoke(app, ["eval", "--dataset", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "line 1: field 'answerable'" in " ".join(result.output.split())


def test_cli_eval_reports_a_malformed_thresholds_file_and_exits_2(tmp_path: Path) -> None:
    from assistant.cli import app

    good = tmp_path / "set.jsonl"
    good.write_text(json.dumps({"question": "q"}) + "\n")
    limits = tmp_path / "limits.yaml"
    limits.write_text("min: [1, 2]\n")
    arguments = ["eval", "--dataset", str(good), "--thresholds", str(limits), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert "'min' must map metric keys to numbers" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_real_run_on_a_small_dataset(settings: Settings, assistant: Any, tmp_path: Path) -> None:
    records = [
        {
            "id": "jur",
            "question": "Which countries does the article's analysis apply to?",
            "expected_sections": ["Jurisdiction Note"],
            "category": "article",
        },
        {
            "id": "fair",
            "question": "What are the four fair use factors in US law?",
            "expected_sections": ["§ 107. Limitations on exclusive rights: Fair use"],
            "category": "statute",
        },
        {
            "id": "bread",
            "question": "What's a good recipe for banana bread?",
            "answerable": False,
            "category": "out_of_scope",
        },
        {
            "id": "release",
            "question": "I plan to commercially release a track with AI-separated vocals. Is that OK?",
            "must_escalate": ["commercial_release"],
            "category": "escalation",
            "expected_sections": ["When to Ask a Lawyer", "Practical Risks for Producers"],
        },
    ]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    out = tmp_path / "out"
    console = Console(file=io.StringIO())
    assert run_eval_command(settings, dataset=path, out_dir=out, k=5, assistant=assistant, console=console) == 0

    metrics = json.loads((out / "metrics.json").read_text())
    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    report = (out / "report.html").read_text()
    assert [r["id"] for r in results] == ["jur", "fair", "bread", "release"]
    assert report.count("data:image/png;base64,") == 4

    overall = metrics["overall"]
    # Known-correct figures, recomputed independently from the per-case records.
    corpus = assistant.corpus
    assert overall["guardrails.disclaimer_present"] == 1.0
    citations = [c for r in results for c in r["answer"]["citations"]]
    exact = sum(c["quote"] in corpus.text_of(c["source_id"]) for c in citations) / len(citations)
    assert overall["citations.quote_exactness"] == pytest.approx(exact)
    hits = [
        any(c["section"] in r["expected"]["expected_sections"] for c in r["answer"]["citations"][:3])
        for r in results
        if r["expected"]["answerable"] and r["expected"]["expected_sections"]
    ]
    assert overall["citations.section_hit@3"] == pytest.approx(sum(hits) / len(hits), abs=1e-4)
    assert overall["scope.unanswerable_answered_false"] == float(not results[2]["answer"]["answered"])
    assert all(len(r["retrieval"][name]) == 5 for r in results for name in ("assistant", "dense", "bm25"))
    assert overall["latency.p95_s"] is not None and overall["latency.p95_s"] < 5
