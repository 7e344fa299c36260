"""The eval report: one self-contained HTML page built from ``metrics.json`` and ``results.jsonl``.

The page needs no network and no other file (plots are embedded PNG data
URIs), so it can be attached to a CI run or mailed. It is rendered from the
two output files' contents alone, and every piece of dataset or answer text
is HTML-escaped: questions come from users and may hold markup.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure

from assistant.evaluation.metrics import RETRIEVERS

HEADLINE: list[tuple[str, str]] = [
    ("pass_rate", "Cases passing every check"),
    ("citations.section_hit@3", "Expected section among the top 3 citations"),
    ("citations.quote_exactness", "Quotes that are exact passages of their source"),
    ("citations.validity", "Answers whose every [n] and quote is valid"),
    ("citations.section_precision", "Cited sections that were expected"),
    ("citations.sentence_support", "Cited sentences backed by their passages"),
    ("answer.must_include", "Required phrases present"),
    ("answer.hedge_fidelity", "Hedged passages whose hedge the answer keeps"),
    ("escalation.precision", "Escalation precision"),
    ("escalation.recall", "Escalation recall"),
    ("escalation.near_miss_false_rate", "Near-miss cases with a false escalation"),
    ("scope.answerable_answered_true", "Answerable questions answered"),
    ("scope.unanswerable_answered_false", "Unanswerable questions declined"),
    ("guardrails.disclaimer_present", "Disclaimer present and verbatim"),
    ("retrieval.assistant.hit@3", "Retrieval: expected section in the top 3 (assistant)"),
    ("retrieval.assistant.mrr", "Retrieval: mean reciprocal rank (assistant)"),
    ("retrieval.assistant.recall@10", "Retrieval: expected sections in the top 10 (assistant)"),
    ("latency.p50_s", "Latency p50 (s)"),
    ("latency.p95_s", "Latency p95 (s)"),
    ("cases.errors", "Cases where asking raised an exception"),
]
"""Metrics shown first, in the console summary and at the top of the report."""

_COLOURS = {"assistant": "#1f6feb", "dense": "#8250df", "bm25": "#bf8700"}
_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin:32px 0 12px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.meta{color:#59636e;margin-bottom:16px}
.banner{padding:12px 16px;border-radius:6px;font-weight:600;margin:12px 0}
.ok{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}.muted{color:#59636e}
table{border-collapse:collapse;background:#fff;margin:8px 0}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f0f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.plots figure{margin:0;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:8px}
.plots img{width:100%;height:auto}figcaption{color:#59636e;font-size:13px}
.case{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;margin:12px 0}
.case.failed{border-left:5px solid #cf222e}.case.passed{border-left:5px solid #1a7f37}
.case h3{margin:0 0 6px;font-size:16px}.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.cols h4{margin:8px 0 4px}ul{margin:4px 0;padding-left:20px}
.answer{white-space:pre-wrap;background:#f6f8fa;border-radius:4px;padding:8px;margin:4px 0}
.checks li{color:#a40e26}.cites{list-style:none;padding-left:0}.cites li{margin:4px 0}
.tag{display:inline-block;background:#eaeef2;border-radius:10px;padding:0 8px;font-size:12px}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def plot_category_pass_rates(by_category: dict[str, dict[str, Any]]) -> str:
    """Horizontal bars: share of cases passing every check, per category (with case counts)."""
    names = sorted(by_category, key=lambda name: by_category[name].get("pass_rate") or 0.0)
    rates = [by_category[name].get("pass_rate") or 0.0 for name in names]
    figure = Figure(figsize=(6, 0.5 + 0.32 * max(len(names), 1)))
    axes = figure.subplots()
    bars = axes.barh([f"{name} (n={by_category[name]['cases']})" for name in names], rates, color="#1f6feb")
    axes.bar_label(bars, labels=[f"{rate:.0%}" for rate in rates], padding=3, fontsize=8)
    axes.set_xlim(0, 1.12)
    axes.set_xlabel("cases passing every check")
    axes.set_title("Pass rate per category")
    return _png(figure)


def plot_escalation_confusion(confusion: dict[str, dict[str, int]]) -> str:
    """A trigger × outcome grid of case counts; cells holding errors (missed, false alarm) are red."""
    columns = [("tp", "fired, expected"), ("fn", "missed"), ("fp", "false alarm"), ("tn", "quiet, not expected")]
    triggers = list(confusion)
    figure = Figure(figsize=(6, 0.8 + 0.45 * max(len(triggers), 1)))
    axes = figure.subplots()
    colours: list[list[tuple[float, float, float]]] = []
    for trigger in triggers:
        row = []
        for key, _ in columns:
            value = confusion[trigger][key]
            error = key in ("fn", "fp") and value > 0
            row.append((1.0, 0.82, 0.80) if error else (0.86, 0.98, 0.88) if key in ("tp", "tn") else (1.0, 1.0, 1.0))
            axes.text(len(row) - 1, len(colours), str(value), ha="center", va="center", fontsize=10)
        colours.append(row)
    axes.imshow(colours, aspect="auto")
    axes.set_xticks(range(len(columns)), [label for _, label in columns], fontsize=8)
    axes.set_yticks(range(len(triggers)), triggers, fontsize=8)
    axes.set_title("Escalation per trigger (cases)")
    return _png(figure)


def plot_hit_at_k(overall: dict[str, Any], retrievers: Sequence[str], k: int) -> str:
    """Section hit@k for k = 1…K, one line per retriever."""
    figure = Figure(figsize=(6, 3.6))
    axes = figure.subplots()
    depths = list(range(1, k + 1))
    for name in retrievers:
        values = [overall.get(f"retrieval.{name}.hit@{depth}") for depth in depths]
        if all(value is None for value in values):
            continue
        points = [value if value is not None else float("nan") for value in values]
        axes.plot(depths, points, marker="o", label=name, color=_COLOURS.get(name))
    axes.set_ylim(0, 1.02)
    axes.set_xticks(depths)
    axes.set_xlabel("k (distinct sections)")
    axes.set_ylabel("hit@k")
    axes.set_title("Expected section within the top k retrieved sections")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    return _png(figure)


def plot_latency(latencies: Sequence[float], p50: float | None, p95: float | None) -> str:
    """Histogram of per-case answer time with p50 and p95 marked."""
    figure = Figure(figsize=(6, 3.6))
    axes = figure.subplots()
    axes.hist([value * 1000 for value in latencies], bins=30, color="#57606a")
    for value, label, style in ((p50, "p50", "--"), (p95, "p95", ":")):
        if value is not None:
            axes.axvline(value * 1000, color="#cf222e", linestyle=style, label=f"{label} {value * 1000:.0f} ms")
    axes.set_xlabel("time to answer (ms)")
    axes.set_ylabel("cases")
    axes.set_title("Latency per case")
    axes.legend()
    return _png(figure)


def _headline_table(metrics: dict[str, Any]) -> str:
    overall, limits = metrics["overall"], metrics["thresholds"]
    failing = {failure["metric"] for failure in metrics["gate"]["failures"]}
    labels = dict(HEADLINE)
    targets = limits.get("targets", {})
    unmet = {target["metric"] for target in metrics.get("targets_unmet", [])}
    keys = [key for key, _ in HEADLINE] + [k for k in [*limits["min"], *limits["max"]] if k not in labels]
    rows = []
    for key in keys:
        threshold = f"≥ {limits['min'][key]:g}" if key in limits["min"] else ""
        threshold = threshold or (f"≤ {limits['max'][key]:g}" if key in limits["max"] else "—")
        if key in targets:
            threshold = f"target ≥ {targets[key]:g}; gate {threshold}"
        status = (
            "FAIL" if key in failing else ("below target" if key in unmet else ("pass" if threshold != "—" else ""))
        )
        css = "bad" if status in ("FAIL", "below target") else ("ok" if status else "")
        rows.append(
            f"<tr><td>{_e(labels.get(key, key))}</td><td><code>{_e(key)}</code></td>"
            f'<td class="num">{_fmt(overall.get(key))}</td><td class="num">{_e(threshold)}</td>'
            f'<td class="{css}">{status}</td></tr>'
        )
    head = "<tr><th>Metric</th><th>Key</th><th>Value</th><th>Threshold</th><th></th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _retrieval_table(overall: dict[str, Any], retrievers: Sequence[str], k: int) -> str:
    depths = sorted({1, min(3, k), min(5, k), k})
    head = "".join(f"<th>hit@{d}</th>" for d in depths) + f"<th>recall@{k}</th><th>MRR</th>"
    rows = []
    for name in retrievers:
        cells = [overall.get(f"retrieval.{name}.hit@{d}") for d in depths]
        cells += [overall.get(f"retrieval.{name}.recall@{k}"), overall.get(f"retrieval.{name}.mrr")]
        rows.append(f"<tr><td>{_e(name)}</td>" + "".join(f'<td class="num">{_fmt(c)}</td>' for c in cells) + "</tr>")
    return f"<table><tr><th>Retriever</th>{head}</tr>{''.join(rows)}</table>"


def _category_table(by_category: dict[str, dict[str, Any]]) -> str:
    keys = [
        ("cases", "Cases"),
        ("pass_rate", "Pass rate"),
        ("citations.section_hit@3", "Section hit@3"),
        ("answer.must_include", "Must include"),
        ("escalation.recall", "Esc. recall"),
        ("escalation.precision", "Esc. precision"),
        ("scope.answerable_answered_true", "Answered"),
        ("scope.unanswerable_answered_false", "Declined"),
    ]
    head = "".join(f"<th>{_e(label)}</th>" for _, label in keys)
    rows = [
        f"<tr><td>{_e(name)}</td>" + "".join(f'<td class="num">{_fmt(values.get(key))}</td>' for key, _ in keys)
        for name, values in by_category.items()
    ]
    return f"<table><tr><th>Category</th>{head}</tr>{'</tr>'.join(rows)}</tr></table>"


def _list(items: Sequence[object], empty: str = "none") -> str:
    if not items:
        return f'<span class="muted">{_e(empty)}</span>'
    return "<ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul>"


def _case_html(record: dict[str, Any]) -> str:
    expected, answer = record["expected"], record["answer"]
    state = "passed" if record["passed"] else "failed"
    history = "".join(f"<li><b>{_e(t['role'])}:</b> {_e(t['content'])}</li>" for t in record["history"])
    citations = "".join(
        f"<li>[{c['n']}] <b>{_e(c['section'])}</b>{' ✓' if c['section'] in expected['expected_sections'] else ''}"
        f' <span class="muted">({_e(c["source_title"])})</span><br>“{_e(c["quote"])}”</li>'
        for c in answer["citations"]
    )
    checks = "".join(
        f"<li><b>{_e(failure['check'])}</b>: {_e(failure['detail'])}</li>" for failure in record["failed_checks"]
    )
    retrieved = record["retrieval"].get("assistant", [])[:5]
    answered = "answered" if answer["answered"] else "declined"
    if answer.get("input_problem"):
        answered += f" (input problem: {answer['input_problem']})"
    return f"""<div class="case {state}" id="case-{_e(record["id"])}">
<h3>{_e(record["id"])} <span class="tag">{_e(record["category"])}</span>
<span class="tag">{record["latency_s"] * 1000:.0f} ms</span></h3>
<div><b>Q:</b> {_e(record["question"])}</div>
{f"<div><b>History:</b><ul>{history}</ul></div>" if history else ""}
{f'<ul class="checks">{checks}</ul>' if checks else ""}
<div class="cols"><div><h4>Expected</h4>
<div>{"answerable" if expected["answerable"] else "not answerable (should decline)"}</div>
<div><b>Sections:</b> {_list(expected["expected_sections"])}</div>
<div><b>Escalations:</b> {_list(expected["must_escalate"])}</div>
<div><b>Must include:</b> {_list(expected["must_include"])}</div></div>
<div><h4>Got</h4><div>{_e(answered)}</div>
<div class="answer">{_e(answer["answer"])}</div>
<div><b>Citations</b> (✓ = expected section): {f"<ol class='cites'>{citations}</ol>" if citations else _list([])}</div>
<div><b>Escalations:</b> {_list([e["trigger"] for e in answer["escalations"]])}</div>
{f"<div><b>Notices:</b> {_list(answer['notices'])}</div>" if answer.get("notices") else ""}
<div><b>Retrieved sections (assistant):</b> {_e(", ".join(retrieved) or "none")}</div>
</div></div></div>"""


def _confusion_tables(metrics: dict[str, Any]) -> str:
    """Per trigger and for scope: the four counts, precision and recall."""
    rows = []
    scope = metrics.get("scope_confusion")
    named = [(trigger, counts) for trigger, counts in metrics["escalation_confusion"].items()]
    if scope:
        named.append(("scope (answered vs answerable)", scope))
    for name, c in named:
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else None
        recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else None
        declined = c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else None
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{c['tp']}</td><td>{c['fp']}</td><td>{c['fn']}</td><td>{c['tn']}</td>"
            f"<td>{_fmt(precision)}</td><td>{_fmt(recall)}</td><td>{_fmt(declined)}</td></tr>"
        )
    return (
        "<table><tr><th></th><th>tp</th><th>fp</th><th>fn</th><th>tn</th><th>precision</th><th>recall</th>"
        "<th>negatives kept negative</th></tr>" + "".join(rows) + "</table>"
        '<p class="muted">Scope: a positive is an answerable case; tp answered it, fn declined it, '
        "tn declined an unanswerable one, fp answered it.</p>"
    )


def _decisions_html(decisions: dict[str, Any]) -> str:
    """The fitted decisions' cross-validation figures and the bank's size per label."""
    if not decisions:
        return '<p class="muted">The assistant reported no fitted decisions.</p>'
    situation, coverage = decisions.get("situation", {}), decisions.get("coverage", {})
    ranker, sections = decisions.get("ranker", {}), decisions.get("sections", {})
    micro = situation.get("micro", {})
    cv = [
        (
            "situation, micro precision / recall / F1",
            f"{_fmt(micro.get('precision'))} / {_fmt(micro.get('recall'))} / {_fmt(micro.get('f1'))}",
        ),
        ("situation, near-miss false alarms", _fmt(situation.get("near_miss_false_rate"))),
        ("coverage, answerable answered", _fmt(coverage.get("answerable_answered"))),
        ("coverage, out of scope declined", _fmt(coverage.get("unanswerable_declined"))),
        ("sections, top-1 / top-3", f"{_fmt(sections.get('top1'))} / {_fmt(sections.get('top3'))}"),
        (
            "ranker, gold sentence first / in top 3",
            f"{_fmt(ranker.get('gold_hit@1'))} / {_fmt(ranker.get('gold_hit@3'))}",
        ),
        ("ranker, answering section in top 3", _fmt(ranker.get("section_hit@3"))),
    ]
    cv += [(f"threshold: {name}", _fmt(value)) for name, value in decisions.get("thresholds", {}).items()]
    cv_rows = "".join(f"<tr><td>{_e(name)}</td><td>{_e(value)}</td></tr>" for name, value in cv)
    bank = decisions.get("bank", {})
    size_rows = "".join(
        f"<tr><td>{_e(group)}</td><td>{_e(name)}</td><td>{count}</td></tr>"
        for group in ("items", "covered", "kind", "trigger", "section")
        for name, count in bank.get(group, {}).items()
    )
    return (
        f'<p class="muted">Fitted on the question bank (key {_e(decisions.get("key", ""))}), '
        f"{_e(decisions.get('folds', ''))}-fold cross-validation by author; thresholds fitted on other folds.</p>"
        f"<table><tr><th>cross-validated figure</th><th>value</th></tr>{cv_rows}</table>"
        f"<details><summary>The bank's size per label</summary><table><tr><th>label</th><th>value</th>"
        f"<th>messages</th></tr>{size_rows}</table></details>"
    )


def render_report(metrics: dict[str, Any], results: Sequence[dict[str, Any]]) -> str:
    """The whole page: verdict, headline metrics vs thresholds, plots, tables, then failing cases first."""
    overall, k = metrics["overall"], int(metrics["run"]["k"])
    retrievers = [name for name in RETRIEVERS if f"retrieval.{name}.mrr" in overall]
    gate = metrics["gate"]
    verdict = (
        '<div class="banner ok">Every metric meets its threshold.</div>'
        if gate["passed"]
        else '<div class="banner bad">Below threshold: '
        + "; ".join(_e(failure["message"]) for failure in gate["failures"])
        + "</div>"
    )
    failing = [record for record in results if not record["passed"]]
    passing = [record for record in results if record["passed"]]
    latencies = [float(record["latency_s"]) for record in results]
    plots = [
        (plot_category_pass_rates(metrics["by_category"]), "Share of cases passing every check, per category."),
        (plot_escalation_confusion(metrics["escalation_confusion"]), "Red cells are errors (missed or false alarm)."),
        (plot_hit_at_k(overall, retrievers, k), "Retrieval only; baselines see the question without history."),
        (plot_latency(latencies, overall.get("latency.p50_s"), overall.get("latency.p95_s")), "Time per ask()."),
    ]
    figures = "".join(
        f'<figure><img src="{src}" alt="{_e(cap)}"><figcaption>{_e(cap)}</figcaption></figure>' for src, cap in plots
    )
    dataset = metrics["dataset"]
    passing_html = "".join(_case_html(record) for record in passing)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Eval report — {_e(dataset["path"])}</title><style>{_STYLE}</style></head>
<body><main>
<h1>Eval report</h1>
<div class="meta">{_e(dataset["path"])} · {dataset["cases"]} cases · run {_e(metrics["run"].get("started_at", ""))}
· {_e(metrics["run"].get("duration_s", ""))} s · retrieval k = {k}</div>
{verdict}
<div class="banner {"ok" if not failing else "bad"}">{len(passing)}/{len(results)} cases pass every check;
<a href="#failing">{len(failing)} failing cases</a> are listed first below.</div>
<h2>Headline metrics</h2>{_headline_table(metrics)}
<h2>Plots</h2><div class="plots">{figures}</div>
<h2>Retrieval: assistant vs baselines</h2>{_retrieval_table(overall, retrievers, k)}
<h2>Per category</h2>{_category_table(metrics["by_category"])}
<h2>Confusion: each trigger, and scope</h2>{_confusion_tables(metrics)}
<h2>The decisions: cross-validation on the question bank</h2>{_decisions_html(metrics.get("decisions") or {})}
<h2 id="failing">Failing cases ({len(failing)})</h2>
{"".join(_case_html(record) for record in failing) or '<p class="muted">None.</p>'}
<h2>Passing cases ({len(passing)})</h2>
<details><summary>Show {len(passing)} passing cases</summary>{passing_html}</details>
</main></body></html>
"""
