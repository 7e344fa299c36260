from __future__ import annotations

from typing import Any

import pytest

from assistant.corpus import Corpus
from assistant.evaluation.dataset import EvalCase
from assistant.evaluation.metrics import (
    CaseOutcome,
    aggregate,
    by_category,
    containment,
    escalation_confusion,
    hedges_in,
    percentile,
    score_case,
    split_sentences,
)
from assistant.schemas import Answer, Citation, Escalation

WHAT = "What Stem Separation Actually Does"
PLATFORM = "Platform Terms and Conditions"
DERIVATIVE = (
    "Derivative works. The output of a stem separator — an isolated vocal track, for example — "
    "is arguably a derivative work."
)
REPRODUCTION = "Even if the copy is temporary and exists only during processing, it is a reproduction."
STREAMING = (
    "Extracting stems from a streaming service recording and using them in a new production likely violates "
    "those terms, regardless of copyright considerations."
)


def case(**fields: Any) -> EvalCase:
    return EvalCase.model_validate({"id": "c", "question": "q", **fields})


def cite(n: int, quote: str, section: str = WHAT, source_id: str = "article") -> Citation:
    return Citation(n=n, source_id=source_id, source_title="Article", section=section, url=None, quote=quote)


def reply(corpus: Corpus, text: str, citations: list[Citation], answered: bool = True, **extra: Any) -> Answer:
    return Answer(
        answer=text,
        answered=answered,
        citations=citations,
        disclaimer=corpus.disclaimer,
        rendered=f"{text}\n\n{corpus.disclaimer}",
        **extra,
    )


def checks(score: Any) -> list[str]:
    return [failure.check for failure in score.failures]


def escalate(*triggers: str) -> list[Escalation]:
    return [Escalation(trigger=trigger, text="bullet") for trigger in triggers]


# --- text helpers -------------------------------------------------------------------------------------------


def test_split_sentences_attaches_markers_on_either_side_of_the_full_stop() -> None:
    sentences = split_sentences("It is a copy [1]. It is arguably derivative.[2][3] No citation here.")
    assert [(s.text, s.markers) for s in sentences] == [
        ("It is a copy .", (1,)),
        ("It is arguably derivative.", (2, 3)),
        ("No citation here.", ()),
    ]


def test_split_sentences_keeps_abbreviations_and_splits_list_items() -> None:
    sentences = split_sentences("Under 17 U.S.C. § 106 the owner may reproduce [1].\n- Read the terms [2]\n- Ask [3]")
    assert [s.markers for s in sentences] == [(1,), (2,), (3,)]
    assert sentences[0].text.startswith("Under 17 U.S.C. § 106")
    assert sentences[1].text == "Read the terms"


def test_containment_counts_content_words_only() -> None:
    assert containment("The copy is a reproduction.", [REPRODUCTION]) == 1.0
    assert containment("The copy is a reproduction of bananas.", [REPRODUCTION]) == pytest.approx(2 / 3)
    assert containment("the and of", ["anything"]) == 1.0


def test_hedges_in_finds_whole_words_only() -> None:
    assert hedges_in("It is arguably derivative and may infringe; the argument is not airtight.") == [
        "arguably",
        "may",
        "not airtight",
    ]
    assert hedges_in("Maybe in Mayfair it is settled.") == []


def test_percentile_interpolates_and_handles_no_values() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([0.1] * 19 + [2.0], 95) == pytest.approx(0.195)
    assert percentile([], 50) is None


# --- one case -----------------------------------------------------------------------------------------------


def test_a_faithful_answer_passes_every_check(corpus: Corpus) -> None:
    answer = reply(corpus, f"{DERIVATIVE} [1] {REPRODUCTION} [2]", [cite(1, DERIVATIVE), cite(2, REPRODUCTION)])
    score = score_case(CaseOutcome(case(expected_sections=[WHAT], must_include=["Derivative"]), answer, 0.1), corpus)
    assert score.failures == []
    assert score.section_hit is True
    assert score.citations_valid is True
    assert (score.quotes_exact.value, score.sentences_supported.value, score.hedges_kept.value) == (1.0, 1.0, 1.0)
    assert score.must_include.value == 1.0
    assert score.disclaimer_present


def test_a_quote_that_is_not_in_its_file_fails_exactness_and_validity(corpus: Corpus) -> None:
    altered = REPRODUCTION.replace("temporary", "brief")
    score = score_case(CaseOutcome(case(), reply(corpus, f"{altered} [1]", [cite(1, altered)]), 0.1), corpus)
    assert "quote_exact" in checks(score)
    assert score.quotes_exact.value == 0.0
    assert score.citations_valid is False


def test_a_quote_attributed_to_the_wrong_source_is_not_exact(corpus: Corpus) -> None:
    answer = reply(corpus, f"{REPRODUCTION} [1]", [cite(1, REPRODUCTION, source_id="us-copyright-act-106")])
    assert score_case(CaseOutcome(case(), answer, 0.1), corpus).quotes_exact.value == 0.0


def test_a_marker_without_citation_is_invalid(corpus: Corpus) -> None:
    answer = reply(corpus, f"{REPRODUCTION} [1] {DERIVATIVE} [2]", [cite(1, REPRODUCTION)])
    score = score_case(CaseOutcome(case(), answer, 0.1), corpus)
    assert score.citations_valid is False
    assert any(f.check == "citation_valid" and "[2]" in f.detail for f in score.failures)


def test_section_hit_looks_at_the_top_three_citations_only(corpus: Corpus) -> None:
    quotes = [REPRODUCTION, DERIVATIVE, REPRODUCTION, STREAMING]
    sections = [WHAT, WHAT, WHAT, PLATFORM]
    citations = [cite(i + 1, q, s) for i, (q, s) in enumerate(zip(quotes, sections, strict=True))]
    text = " ".join(f"{q} [{i + 1}]" for i, q in enumerate(quotes))
    miss = score_case(CaseOutcome(case(expected_sections=[PLATFORM]), reply(corpus, text, citations), 0.1), corpus)
    assert miss.section_hit is False
    assert "section_hit@3" in checks(miss)
    assert miss.section_precision.value == 0.25
    hit = score_case(CaseOutcome(case(expected_sections=[WHAT]), reply(corpus, text, citations), 0.1), corpus)
    assert hit.section_hit is True
    assert hit.section_precision.value == 0.75


def test_an_answers_notices_count_after_its_citations_and_an_abstention_stays_a_miss(corpus: Corpus) -> None:
    lawyer = "When to Ask a Lawyer"
    notice = [Escalation(trigger="claim_or_takedown", text="If you receive a copyright claim or takedown notice.")]
    expected = case(expected_sections=[lawyer], must_include=["takedown notice"])
    answered = reply(corpus, f"{STREAMING} [1]", [cite(1, STREAMING, PLATFORM)], escalations=notice)
    score = score_case(CaseOutcome(expected, answered, 0.1), corpus)
    assert score.section_hit is True and score.must_include.hits == 1
    three = [cite(i + 1, q) for i, q in enumerate([REPRODUCTION, DERIVATIVE, REPRODUCTION])]
    text = " ".join(f"{c.quote} [{c.n}]" for c in three)
    late = score_case(CaseOutcome(expected, reply(corpus, text, three, escalations=notice), 0.1), corpus)
    assert late.section_hit is False  # the notice comes fourth
    declined = reply(corpus, "The sources do not cover that.", [], answered=False, escalations=notice)
    missed = score_case(CaseOutcome(expected, declined, 0.1), corpus)
    assert missed.section_hit is False and missed.must_include.hits == 0


def test_section_hit_does_not_apply_to_unanswerable_cases(corpus: Corpus) -> None:
    answer = reply(corpus, "The sources do not cover that.", [], answered=False)
    score = score_case(CaseOutcome(case(answerable=False, expected_sections=[WHAT]), answer, 0.1), corpus)
    assert score.section_hit is None
    assert score.failures == []


def test_an_unsupported_sentence_fails_support(corpus: Corpus) -> None:
    answer = reply(corpus, "Stem separation is always legal in every country. [1]", [cite(1, REPRODUCTION)])
    score = score_case(CaseOutcome(case(), answer, 0.1), corpus)
    assert score.sentences_supported.value == 0.0
    assert "sentence_support" in checks(score)


def test_uncited_sentences_are_counted_but_not_judged(corpus: Corpus) -> None:
    answer = reply(
        corpus,
        f"Here is what the article says about copies made while processing. {REPRODUCTION} [1]",
        [cite(1, REPRODUCTION)],
    )
    score = score_case(CaseOutcome(case(), answer, 0.1), corpus)
    assert (score.sentences_uncited.hits, score.sentences_uncited.total) == (1, 2)
    assert score.sentences_supported.value == 1.0


def test_dropping_a_hedge_fails_hedge_fidelity(corpus: Corpus) -> None:
    answer = reply(corpus, "The output of a stem separator is a derivative work. [1]", [cite(1, DERIVATIVE)])
    score = score_case(CaseOutcome(case(), answer, 0.1), corpus)
    assert score.hedges_kept.value == 0.0
    assert any(f.check == "hedge_fidelity" and "arguably" in f.detail for f in score.failures)


def test_hedge_fidelity_does_not_apply_to_unhedged_passages(corpus: Corpus) -> None:
    answer = reply(corpus, f"{REPRODUCTION} [1]", [cite(1, REPRODUCTION)])
    assert score_case(CaseOutcome(case(), answer, 0.1), corpus).hedges_kept.total == 0


def test_must_include_is_case_insensitive_and_reports_missing_phrases(corpus: Corpus) -> None:
    answer = reply(corpus, f"{REPRODUCTION} [1]", [cite(1, REPRODUCTION)])
    score = score_case(CaseOutcome(case(must_include=["TEMPORARY", "derivative"]), answer, 0.1), corpus)
    assert (score.must_include.hits, score.must_include.total) == (1, 2)
    assert any(f.check == "must_include" and "'derivative'" in f.detail for f in score.failures)


def test_scope_mismatch_is_a_failure_both_ways(corpus: Corpus) -> None:
    declined = reply(corpus, "Not covered.", [], answered=False, input_problem="empty")
    score = score_case(CaseOutcome(case(answerable=True), declined, 0.1), corpus)
    assert any(f.check == "scope" and "input problem: empty" in f.detail for f in score.failures)
    answered = reply(corpus, f"{REPRODUCTION} [1]", [cite(1, REPRODUCTION)])
    assert "scope" in checks(score_case(CaseOutcome(case(answerable=False), answered, 0.1), corpus))


def test_escalations_missing_and_unexpected_are_failures(corpus: Corpus) -> None:
    answer = reply(corpus, "x", [], escalations=escalate("building_product"))
    score = score_case(CaseOutcome(case(must_escalate=["commercial_release"]), answer, 0.1), corpus)
    details = [f.detail for f in score.failures if f.check == "escalation"]
    assert details == ["'commercial_release' should have fired", "'building_product' fired but was not expected"]


@pytest.mark.parametrize("where", ["field", "rendered"])
def test_disclaimer_must_be_verbatim_and_rendered(corpus: Corpus, where: str) -> None:
    answer = reply(corpus, "x", [])
    if where == "field":
        answer.disclaimer = corpus.disclaimer.replace("general", "specific")
    else:
        answer.rendered = "x"
    score = score_case(CaseOutcome(case(), answer, 0.1), corpus)
    assert not score.disclaimer_present
    assert "disclaimer" in checks(score)


# --- aggregates ---------------------------------------------------------------------------------------------


def test_escalation_precision_and_recall_are_micro_averaged_over_case_trigger_pairs(corpus: Corpus) -> None:
    outcomes = [
        # tp commercial_release
        (case(id="a", must_escalate=["commercial_release"]), ["commercial_release"]),
        # tp claim_or_takedown, fn commercial_release
        (case(id="b", must_escalate=["commercial_release", "claim_or_takedown"]), ["claim_or_takedown"]),
        # fp building_product on a case that expects nothing
        (case(id="c", category="near_miss"), ["building_product"]),
        (case(id="d", category="near_miss"), []),
    ]
    scores = [
        score_case(CaseOutcome(c, reply(corpus, "x", [], escalations=escalate(*fired)), 0.1), corpus)
        for c, fired in outcomes
    ]
    metrics = aggregate(scores, k=3)
    assert metrics["escalation.precision"] == pytest.approx(2 / 3)
    assert metrics["escalation.recall"] == pytest.approx(2 / 3)
    assert metrics["escalation.f1"] == pytest.approx(2 / 3)
    assert metrics["escalation.commercial_release.recall"] == 0.5
    assert metrics["escalation.commercial_release.precision"] == 1.0
    assert metrics["escalation.commercial_release.support"] == 2
    assert metrics["escalation.building_product.precision"] == 0.0
    assert metrics["escalation.building_product.recall"] is None
    assert metrics["escalation.near_miss_false_rate"] == 0.5
    confusion = escalation_confusion(scores)
    assert confusion["commercial_release"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 2}
    assert confusion["building_product"] == {"tp": 0, "fp": 1, "fn": 0, "tn": 3}


def test_retrieval_hit_recall_and_mrr_per_retriever(corpus: Corpus) -> None:
    def outcome(expected: list[str], assistant: list[str], dense: list[str]) -> CaseOutcome:
        c = case(id=str(expected), expected_sections=expected)
        return CaseOutcome(c, reply(corpus, "x", []), 0.1, {"assistant": assistant, "dense": dense})

    scores = [
        score_case(outcome(["A", "B"], ["A", "X", "B"], ["X", "Y", "A"]), corpus),
        score_case(outcome(["C"], ["X", "C", "Y"], ["X", "Y", "Z"]), corpus),
    ]
    metrics = aggregate(scores, k=3)
    assert metrics["retrieval.cases"] == 2
    assert metrics["retrieval.assistant.hit@1"] == 0.5
    assert metrics["retrieval.assistant.hit@2"] == 1.0
    assert metrics["retrieval.assistant.recall@1"] == 0.25
    assert metrics["retrieval.assistant.recall@3"] == 1.0
    assert metrics["retrieval.assistant.mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert metrics["retrieval.dense.hit@3"] == 0.5
    assert metrics["retrieval.dense.recall@3"] == 0.25
    assert metrics["retrieval.dense.mrr"] == pytest.approx((1 / 3) / 2)
    assert metrics["retrieval.bm25.mrr"] is None


def test_scope_disclaimer_must_include_and_latency_aggregate(corpus: Corpus) -> None:
    good = reply(corpus, f"{REPRODUCTION} [1]", [cite(1, REPRODUCTION)])
    declined = reply(corpus, "Not covered.", [], answered=False)
    scores = [
        score_case(CaseOutcome(case(id="1", must_include=["temporary", "derivative"]), good, 0.1), corpus),
        score_case(CaseOutcome(case(id="2", must_include=["copy"]), declined, 0.2), corpus),
        score_case(CaseOutcome(case(id="3", answerable=False), declined, 0.3), corpus),
        score_case(CaseOutcome(case(id="4", answerable=False), good, 0.4), corpus),
    ]
    metrics = aggregate(scores, k=3)
    assert metrics["cases"] == 4
    assert metrics["scope.answerable_answered_true"] == 0.5
    assert metrics["scope.false_abstention_rate"] == 0.5
    assert metrics["scope.unanswerable_answered_false"] == 0.5
    assert metrics["answer.must_include"] == pytest.approx(1 / 3)
    assert metrics["guardrails.disclaimer_present"] == 1.0
    assert metrics["latency.p50_s"] == pytest.approx(0.25)
    assert metrics["latency.max_s"] == pytest.approx(0.4)
    assert metrics["pass_rate"] == 0.25


def test_metrics_that_do_not_apply_are_none(corpus: Corpus) -> None:
    metrics = aggregate([score_case(CaseOutcome(case(), reply(corpus, "x", []), 0.1), corpus)], k=2)
    assert metrics["citations.section_hit@3"] is None
    assert metrics["citations.quote_exactness"] is None
    assert metrics["answer.must_include"] is None
    assert metrics["escalation.recall"] is None
    assert metrics["scope.unanswerable_answered_false"] is None


def test_by_category_splits_cases(corpus: Corpus) -> None:
    good = reply(corpus, f"{REPRODUCTION} [1]", [cite(1, REPRODUCTION)])
    scores = [
        score_case(CaseOutcome(case(id="1", category="b"), good, 0.1), corpus),
        score_case(CaseOutcome(case(id="2", category="a", answerable=False), good, 0.1), corpus),
        score_case(CaseOutcome(case(id="3", category="a"), good, 0.1), corpus),
    ]
    split = by_category(scores, k=2)
    assert list(split) == ["a", "b"]
    assert split["a"]["cases"] == 2
    assert split["a"]["pass_rate"] == 0.5
    assert split["b"]["pass_rate"] == 1.0


def test_split_sentences_reads_a_run_in_label_with_its_sentence() -> None:
    text = "Derivative works. The output is arguably a derivative work. [1] Short one. [2]"
    sentences = split_sentences(text)
    assert [(s.text, s.markers) for s in sentences] == [
        ("Derivative works. The output is arguably a derivative work.", (1,)),
        ("Short one.", (2,)),
    ]


def test_scope_confusion_counts_answers_against_answerability(corpus: Corpus) -> None:
    from assistant.evaluation.metrics import scope_confusion

    def outcome(answerable: bool, answered: bool) -> CaseOutcome:
        return CaseOutcome(case(answerable=answerable), reply(corpus, "x", [], answered=answered), 0.1, {})

    pairs = [(True, True), (True, True), (True, False), (False, False), (False, True)]
    scores = [score_case(outcome(a, b), corpus) for a, b in pairs]
    assert scope_confusion(scores) == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
