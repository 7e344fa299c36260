"""Score each case's reply and aggregate the scores into the figures of ``metrics.json``.

Everything here is a pure function of the replies, the expectations and the
corpus text, so every metric can be unit-tested on hand-made answers and
recomputed from ``results.jsonl`` alone. The names of the aggregate keys are
documented in ``evals/README.md``; thresholds refer to them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.corpus import ESCALATION_TRIGGER_IDS, Corpus
from assistant.evaluation.dataset import EvalCase
from assistant.schemas import Answer, Escalation

RETRIEVERS = ("assistant", "dense", "bm25")
"""The assistant's own ranking and the two single-method baselines over the same chunks."""

SUPPORT_THRESHOLD = 0.8
"""A sentence is supported when this share of its content words occur in the passages it cites."""

HIT_AT = 3
"""Depth of the citation-based 'section hit' (the top citations a reader sees first)."""

NEAR_MISS_CATEGORY = "near_miss"

HEDGE_CUES = (
    "arguably",
    "not airtight",
    "not clearly resolved",
    "not always clear",
    "untested",
    "unclear",
    "uncertain",
    "unsettled",
    "may",
    "might",
    "could",
    "likely",
    "unlikely",
    "probably",
    "perhaps",
    "possibly",
    "potentially",
    "depends",
    "some argue",
    "would contend",
)
_HEDGE = re.compile(r"\b(" + "|".join(re.escape(cue) for cue in HEDGE_CUES) + r")\b", re.IGNORECASE)
_MARKER = re.compile(r"\[(\d+)\]")
_LABEL_WORDS = 6
_WORD = re.compile(r"\w+", re.UNICODE)
# A sentence ends at . ! ? or … (plus closing quotes and any [n] markers that follow it) before white space.
_SENTENCE_END = re.compile(r"[.!?…][\"”’)]*(?:\s*\[\d+\])*(?=\s|$)")
_ABBREVIATION = re.compile(r"(?:\b[A-Za-z]|\b(?:e\.g|i\.e|etc|vs|v|no|sec|art|para|cf|U\.S\.C|U\.S|Stat|Pub|L))\.$")
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "a an and are as at be been but by can do does for from has have if in into is it its not of on or so such "
        "than that the their then there these they this those to was were what when which who will with you your "
        "i me my we our us he she his her them also any all more most other some only own same very just about",
    )
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (None for no values)."""
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


@dataclass
class Ratio:
    """A count of hits out of a total; its value is None when nothing was counted."""

    hits: int = 0
    total: int = 0

    @property
    def value(self) -> float | None:
        """The share ``hits / total``, or None when the metric does not apply."""
        return self.hits / self.total if self.total else None

    def add(self, other: Ratio) -> None:
        """Pool counts (micro-averaging)."""
        self.hits += other.hits
        self.total += other.total


@dataclass
class CaseOutcome:
    """What one case produced: the reply, how long it took and each retriever's ranked sections."""

    case: EvalCase
    answer: Answer
    latency_s: float
    rankings: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None
    """Set when asking raised instead of replying: the exception, as ``Type: message``."""


@dataclass
class Failure:
    """One failed check of one case, said in words a maintainer can act on."""

    check: str
    detail: str


@dataclass
class CaseScore:
    """Every per-case check; the aggregates in ``metrics.json`` pool these."""

    outcome: CaseOutcome
    disclaimer_present: bool
    section_hit: bool | None = None
    section_precision: Ratio = field(default_factory=Ratio)
    quotes_exact: Ratio = field(default_factory=Ratio)
    citations_valid: bool | None = None
    sentences_supported: Ratio = field(default_factory=Ratio)
    sentences_uncited: Ratio = field(default_factory=Ratio)
    must_include: Ratio = field(default_factory=Ratio)
    hedges_kept: Ratio = field(default_factory=Ratio)
    failures: list[Failure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not self.failures

    @property
    def fired(self) -> set[str]:
        """Escalation triggers the reply raised."""
        return {escalation.trigger for escalation in self.outcome.answer.escalations}

    @property
    def expected(self) -> set[str]:
        """Escalation triggers the case requires (no others may fire)."""
        return set(self.outcome.case.must_escalate)


@dataclass(frozen=True)
class Sentence:
    """One sentence of an answer with the citation numbers it carries."""

    text: str
    markers: tuple[int, ...]


def split_sentences(text: str) -> list[Sentence]:
    """Answer sentences (lines and list items split too), each with the ``[n]`` markers that close it.

    A short run-in label without a marker ("Derivative works. The output ... [1]") is read as
    part of the sentence it introduces, as the corpus chunker reads it.
    """
    sentences: list[Sentence] = []
    for line in text.splitlines():
        pieces: list[str] = []
        cursor = 0
        for match in _SENTENCE_END.finditer(line):
            has_marker = "[" in match.group(0)
            if not has_marker and _ABBREVIATION.search(line[cursor : match.start() + 1]):
                continue
            pieces.append(line[cursor : match.end()])
            cursor = match.end()
        pieces.append(line[cursor:])
        merged: list[str] = []
        for piece in pieces:
            previous = merged[-1] if merged else None
            if previous is not None and not _MARKER.search(previous) and len(previous.split()) <= _LABEL_WORDS:
                merged[-1] = previous + piece
            else:
                merged.append(piece)
        sentences.extend(_sentence(piece) for piece in merged)
    return [sentence for sentence in sentences if content_words(sentence.text)]


def _sentence(raw: str) -> Sentence:
    markers = tuple(int(number) for number in _MARKER.findall(raw))
    return Sentence(text=_MARKER.sub("", raw).strip(" \t-*>#"), markers=markers)


def content_words(text: str) -> set[str]:
    """Lower-cased words that carry meaning (no stop words, no one-letter tokens)."""
    return {word for word in _WORD.findall(text.lower()) if len(word) > 1 and word not in _STOPWORDS}


def containment(sentence: str, passages: Iterable[str]) -> float:
    """Share of the sentence's content words found in the passages (1.0 for a sentence without any)."""
    words = content_words(sentence)
    if not words:
        return 1.0
    pool: set[str] = set()
    for passage in passages:
        pool |= content_words(passage)
    return len(words & pool) / len(words)


def hedges_in(text: str) -> list[str]:
    """The hedge cues a text uses, lower-cased, in order of first use."""
    found: list[str] = []
    for match in _HEDGE.finditer(text):
        cue = match.group(1).lower()
        if cue not in found:
            found.append(cue)
    return found


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _answer_notices(answer: Answer) -> list[Escalation]:
    """The notices that go with an answer's quotes: an answer's bullets live in its notices, not in its text."""
    return list(answer.escalations) if answer.answered else []


def _score_citations(score: CaseScore, corpus: Corpus) -> None:
    """Validity, quote exactness, section precision, sentence support and hedge fidelity."""
    outcome = score.outcome
    answer, case = outcome.answer, outcome.case
    by_number = {citation.n: citation for citation in answer.citations}
    for citation in answer.citations:
        text = corpus.texts.get(citation.source_id)
        exact = bool(citation.quote) and text is not None and citation.quote in text
        score.quotes_exact.add(Ratio(int(exact), 1))
        if not exact:
            score.failures.append(
                Failure("quote_exact", f"[{citation.n}] is not an exact passage of source '{citation.source_id}'")
            )
    unresolved = sorted({int(n) for n in _MARKER.findall(answer.answer)} - set(by_number))
    for number in unresolved:
        score.failures.append(Failure("citation_valid", f"marker [{number}] has no citation"))
    if answer.citations or unresolved:
        score.citations_valid = not unresolved and score.quotes_exact.hits == score.quotes_exact.total

    # What the reader is shown quoted, in order: the answer's citations, then the notices' bullets (each quoted
    # from its section, and shown once, as a notice, not again in the answer). An abstention stays a miss.
    cited = [citation.section for citation in answer.citations] + [n.section for n in _answer_notices(answer)]
    if case.answerable and case.expected_sections:
        top = cited[:HIT_AT]
        score.section_hit = any(section in case.expected_sections for section in top)
        if not score.section_hit:
            score.failures.append(
                Failure(
                    f"section_hit@{HIT_AT}",
                    f"expected one of {case.expected_sections}, top citations are {top or 'none'}",
                )
            )
        if answer.answered:
            score.section_precision = Ratio(sum(section in case.expected_sections for section in cited), len(cited))

    if not answer.answered:
        return
    sentences = split_sentences(answer.answer)
    for sentence in sentences:
        quotes = [by_number[n].quote for n in sentence.markers if n in by_number]
        score.sentences_uncited.add(Ratio(int(not sentence.markers), 1))
        if not sentence.markers:
            continue
        supported = containment(sentence.text, quotes) >= SUPPORT_THRESHOLD
        score.sentences_supported.add(Ratio(int(supported), 1))
        if not supported:
            markers = "".join(f"[{n}]" for n in sentence.markers)
            score.failures.append(Failure("sentence_support", f"“{_short(sentence.text)}” is not backed by {markers}"))
    for citation in answer.citations:
        cues = hedges_in(citation.quote)
        if not cues:
            continue
        citing = [sentence.text for sentence in sentences if citation.n in sentence.markers]
        kept = bool(hedges_in(" ".join(citing) if citing else answer.answer))
        score.hedges_kept.add(Ratio(int(kept), 1))
        if not kept:
            score.failures.append(
                Failure("hedge_fidelity", f"[{citation.n}] hedges ({', '.join(cues)}) but the answer states it flatly")
            )


def score_case(outcome: CaseOutcome, corpus: Corpus) -> CaseScore:
    """Run every check on one reply."""
    answer, case = outcome.answer, outcome.case
    disclaimer_ok = answer.disclaimer == corpus.disclaimer and corpus.disclaimer in answer.rendered
    score = CaseScore(outcome=outcome, disclaimer_present=disclaimer_ok)
    if outcome.error:
        score.failures.append(Failure("error", f"the assistant raised {outcome.error}"))
    if answer.answered != case.answerable:
        detail = "expected an answer, got an abstention" if case.answerable else "expected an abstention, got an answer"
        if answer.input_problem:
            detail += f" (input problem: {answer.input_problem})"
        score.failures.append(Failure("scope", detail))
    _score_citations(score, corpus)
    # The reply as the reader is shown it: the answer, then the notices' bullets (a bullet is shown once, as a notice).
    text = "\n".join([answer.answer, *(notice.text for notice in _answer_notices(answer))]).lower()
    missing = [phrase for phrase in case.must_include if phrase.lower() not in text]
    score.must_include = Ratio(len(case.must_include) - len(missing), len(case.must_include))
    if missing:
        score.failures.append(Failure("must_include", "missing " + ", ".join(f"'{phrase}'" for phrase in missing)))
    for trigger in sorted(score.expected - score.fired):
        score.failures.append(Failure("escalation", f"'{trigger}' should have fired"))
    for trigger in sorted(score.fired - score.expected):
        score.failures.append(Failure("escalation", f"'{trigger}' fired but was not expected"))
    if not disclaimer_ok:
        score.failures.append(Failure("disclaimer", "the disclaimer is missing or altered"))
    return score


def _prf(tp: int, fp: int, fn: int) -> tuple[float | None, float | None, float | None]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = None
    if precision is not None and recall is not None:
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def escalation_confusion(scores: Sequence[CaseScore]) -> dict[str, dict[str, int]]:
    """Per trigger: true/false positives and negatives, one (case, trigger) pair per case."""
    table = {trigger: {"tp": 0, "fp": 0, "fn": 0, "tn": 0} for trigger in ESCALATION_TRIGGER_IDS}
    for score in scores:
        for trigger in set(table) | score.fired | score.expected:
            row = table.setdefault(trigger, {"tp": 0, "fp": 0, "fn": 0, "tn": 0})
            fired, expected = trigger in score.fired, trigger in score.expected
            row["tp" if fired and expected else "fp" if fired else "fn" if expected else "tn"] += 1
    return table


def scope_confusion(scores: Sequence[CaseScore]) -> dict[str, int]:
    """Answered or not against answerable or not: tp = answerable and answered, tn = unanswerable and declined."""
    table = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    for score in scores:
        answerable, answered = score.outcome.case.answerable, score.outcome.answer.answered
        table["tp" if answerable and answered else "fp" if answered else "fn" if answerable else "tn"] += 1
    return table


def _escalation_metrics(scores: Sequence[CaseScore]) -> dict[str, float | int | None]:
    table = escalation_confusion(scores)
    metrics: dict[str, float | int | None] = {}
    totals = {key: sum(row[key] for row in table.values()) for key in ("tp", "fp", "fn")}
    metrics["escalation.precision"], metrics["escalation.recall"], metrics["escalation.f1"] = _prf(**totals)
    for trigger, row in table.items():
        precision, recall, f1 = _prf(row["tp"], row["fp"], row["fn"])
        prefix = f"escalation.{trigger}"
        metrics.update({f"{prefix}.precision": precision, f"{prefix}.recall": recall, f"{prefix}.f1": f1})
        metrics[f"{prefix}.support"] = row["tp"] + row["fn"]
    near = [score for score in scores if score.outcome.case.category == NEAR_MISS_CATEGORY]
    false_alarms = sum(bool(score.fired - score.expected) for score in near)
    metrics["escalation.near_miss_false_rate"] = false_alarms / len(near) if near else None
    return metrics


def _retrieval_metrics(scores: Sequence[CaseScore], k: int) -> dict[str, float | int | None]:
    cases = [s.outcome for s in scores if s.outcome.case.answerable and s.outcome.case.expected_sections]
    metrics: dict[str, float | int | None] = {"retrieval.cases": len(cases)}
    for name in RETRIEVERS:
        ranked = [(o.rankings.get(name, [])[:k], set(o.case.expected_sections)) for o in cases if name in o.rankings]
        for depth in range(1, k + 1):
            hits = [bool(expected & set(ranking[:depth])) for ranking, expected in ranked]
            recalls = [len(expected & set(ranking[:depth])) / len(expected) for ranking, expected in ranked]
            metrics[f"retrieval.{name}.hit@{depth}"] = float(np.mean(hits)) if ranked else None
            metrics[f"retrieval.{name}.recall@{depth}"] = float(np.mean(recalls)) if ranked else None
        reciprocal = [
            next((1 / rank for rank, section in enumerate(ranking, 1) if section in expected), 0.0)
            for ranking, expected in ranked
        ]
        metrics[f"retrieval.{name}.mrr"] = float(np.mean(reciprocal)) if ranked else None
    return metrics


def _pooled(scores: Iterable[CaseScore], attribute: str) -> float | None:
    total = Ratio()
    for score in scores:
        total.add(getattr(score, attribute))
    return total.value


def _rate(flags: Sequence[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def aggregate(scores: Sequence[CaseScore], k: int) -> dict[str, float | int | None]:
    """The flat ``metrics.json`` figures for a set of case scores (None where a metric does not apply)."""
    answerable = [s for s in scores if s.outcome.case.answerable]
    unanswerable = [s for s in scores if not s.outcome.case.answerable]
    latencies = [s.outcome.latency_s for s in scores]
    answered_true = _rate([s.outcome.answer.answered for s in answerable])
    metrics: dict[str, float | int | None] = {
        "cases": len(scores),
        "cases.answerable": len(answerable),
        "cases.unanswerable": len(unanswerable),
        "cases.errors": sum(s.outcome.error is not None for s in scores),
        "pass_rate": _rate([s.passed for s in scores]),
        f"citations.section_hit@{HIT_AT}": _rate([s.section_hit for s in scores if s.section_hit is not None]),
        "citations.validity": _rate([s.citations_valid for s in scores if s.citations_valid is not None]),
        "citations.quote_exactness": _pooled(scores, "quotes_exact"),
        "citations.section_precision": _pooled(scores, "section_precision"),
        "citations.sentence_support": _pooled(scores, "sentences_supported"),
        "citations.uncited_sentence_rate": _pooled(scores, "sentences_uncited"),
        "answer.must_include": _pooled(scores, "must_include"),
        "answer.hedge_fidelity": _pooled(scores, "hedges_kept"),
        "scope.answerable_answered_true": answered_true,
        "scope.false_abstention_rate": None if answered_true is None else 1 - answered_true,
        "scope.unanswerable_answered_false": _rate([not s.outcome.answer.answered for s in unanswerable]),
        "guardrails.disclaimer_present": _rate([s.disclaimer_present for s in scores]),
        "latency.p50_s": percentile(latencies, 50),
        "latency.p95_s": percentile(latencies, 95),
        "latency.max_s": max(latencies) if latencies else None,
    }
    metrics.update(_escalation_metrics(scores))
    metrics.update(_retrieval_metrics(scores, k))
    return metrics


def by_category(scores: Sequence[CaseScore], k: int) -> dict[str, dict[str, float | int | None]]:
    """The same figures for each category, categories in alphabetical order."""
    categories = sorted({score.outcome.case.category for score in scores})
    return {name: aggregate([s for s in scores if s.outcome.case.category == name], k) for name in categories}
