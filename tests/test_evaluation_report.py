from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from assistant.evaluation.report import (
    plot_category_pass_rates,
    plot_escalation_confusion,
    plot_hit_at_k,
    plot_latency,
    render_report,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def record(
    case_id: str, passed: bool, question: str = "What is a stem?", answer: str = "An answer [1]."
) -> dict[str, Any]:
    return {
        "id": case_id,
        "line": 1,
        "category": "article",
        "question": question,
        "history": [{"role": "user", "content": "earlier <b>turn</b>"}],
        "expected": {
            "answerable": True,
            "expected_sections": ["Introduction"],
            "must_escalate": ["commercial_release"],
            "must_include": ["stem"],
        },
        "answer": {
            "answer": answer,
            "answered": True,
            "citations": [
                {"n": 1, "source_id": "article", "source_title": "Article", "section": "Introduction", "quote": "q"}
            ],
            "escalations": [],
            "input_problem": None,
        },
        "latency_s": 0.05 if passed else 0.2,
        "retrieval": {"assistant": ["Introduction", "Sources"]},
        "passed": passed,
        "failed_checks": []
        if passed
        else [{"check": "escalation", "detail": "'commercial_release' should have fired"}],
    }


def metrics(gate_failures: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    overall: dict[str, Any] = {
        "cases": 2,
        "pass_rate": 0.5,
        "citations.section_hit@3": 0.95,
        "escalation.recall": 0.5,
        "latency.p50_s": 0.1,
        "latency.p95_s": 0.19,
    }
    for name in ("assistant", "dense", "bm25"):
        for depth in (1, 2, 3):
            overall[f"retrieval.{name}.hit@{depth}"] = 0.3 * depth if name == "dense" else 0.3
            overall[f"retrieval.{name}.recall@{depth}"] = 0.2
        overall[f"retrieval.{name}.mrr"] = 0.4
    return {
        "dataset": {"path": "evals/<set>.jsonl", "sha256": "x", "cases": 2},
        "run": {"k": 3, "started_at": "2025-01-01T00:00:00Z", "duration_s": 1.5},
        "overall": overall,
        "by_category": {"article": {**overall, "cases": 2}, "escalation": {"cases": 1, "pass_rate": None}},
        "escalation_confusion": {"commercial_release": {"tp": 0, "fp": 0, "fn": 1, "tn": 1}},
        "thresholds": {"min": {"escalation.recall": 0.95, "answer.custom": 0.5}, "max": {"latency.p95_s": 1.0}},
        "gate": {"passed": not gate_failures, "failures": gate_failures or []},
    }


FAILURE = {
    "metric": "escalation.recall",
    "value": 0.5,
    "bound": "min",
    "threshold": 0.95,
    "message": "escalation.recall = 0.500; needs at least 0.95",
}


def images(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def test_report_is_self_contained_with_four_png_plots() -> None:
    page = render_report(metrics(), [record("a", True), record("b", False)])
    pngs = images(page)
    assert len(pngs) == 4
    assert all(png.startswith(PNG_MAGIC) for png in pngs)
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page


def test_user_text_is_escaped() -> None:
    evil = record("x", False, question="<script>alert(1)</script>", answer="<img src=x onerror=alert(2)>")
    page = render_report(metrics(), [evil])
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x" not in page
    assert "earlier &lt;b&gt;turn&lt;/b&gt;" in page
    assert "evals/&lt;set&gt;.jsonl" in page


def test_failing_cases_come_first_with_expected_and_got() -> None:
    page = render_report(metrics(), [record("good-one", True), record("bad-one", False)])
    assert page.index('id="case-bad-one"') < page.index('id="case-good-one"')
    bad = page[page.index('id="case-bad-one"') : page.index('id="case-good-one"')]
    assert "Expected" in bad and "Got" in bad
    assert "&#x27;commercial_release&#x27; should have fired" in bad
    assert "1/2 cases pass every check" in page


def test_headline_shows_thresholds_and_marks_failures() -> None:
    page = render_report(metrics([FAILURE]), [record("a", True)])
    assert "Below threshold: escalation.recall = 0.500; needs at least 0.95" in page
    row = page[page.index("<code>escalation.recall</code>") :].split("</tr>", 1)[0]
    assert "≥ 0.95" in row and "FAIL" in row
    assert "<code>answer.custom</code>" in page  # a thresholded key outside the headline list is shown too
    assert "≤ 1" in page
    passing = render_report(metrics(), [record("a", True)])
    assert "Every metric meets its threshold." in passing
    assert "FAIL" not in passing


def test_retrieval_table_compares_assistant_with_baselines() -> None:
    page = render_report(metrics(), [record("a", True)])
    table = page[page.index("Retrieval: assistant vs baselines") :].split("</table>", 1)[0]
    assert [row.split("</td>", 1)[0] for row in table.split("<tr><td>")[1:]] == ["assistant", "dense", "bm25"]
    assert "0.900" in table  # dense hit@3 = 0.3 * 3


@pytest.mark.parametrize(
    "plot",
    [
        lambda: plot_category_pass_rates({"a": {"cases": 1, "pass_rate": 1.0}, "b": {"cases": 2, "pass_rate": None}}),
        lambda: plot_escalation_confusion({"t": {"tp": 1, "fp": 2, "fn": 0, "tn": 5}}),
        lambda: plot_hit_at_k({"retrieval.assistant.hit@1": 0.5, "retrieval.assistant.hit@2": None}, ["assistant"], 2),
        lambda: plot_latency([0.1, 0.2, 0.3], 0.2, 0.29),
        lambda: plot_latency([], None, None),
    ],
)
def test_each_plot_is_a_png_data_uri(plot: Any) -> None:
    uri = plot()
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(PNG_MAGIC)


def test_report_shows_confusion_per_trigger_and_for_scope_and_the_decisions() -> None:
    data = metrics()
    data["scope_confusion"] = {"tp": 3, "fp": 1, "fn": 1, "tn": 2}
    data["decisions"] = {
        "key": "abc",
        "folds": 5,
        "situation": {"micro": {"precision": 0.9, "recall": 0.8, "f1": 0.85}, "near_miss_false_rate": 0.1},
        "coverage": {"answerable_answered": 0.93, "unanswerable_declined": 0.87},
        "thresholds": {"coverage": 0.61},
        "bank": {"trigger": {"commercial_release": 123}},
    }
    page = render_report(data, [record("a", True)])
    assert "scope (answered vs answerable)" in page and "<td>0.750</td>" in page
    assert "commercial_release" in page and "<td>123</td>" in page
    assert "0.930" in page and "threshold: coverage" in page
    bare = render_report(metrics(), [record("a", True)])
    assert "reported no fitted decisions" in bare
