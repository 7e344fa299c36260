"""How the extractive composer shapes an answer, on the real model and a real Chroma index."""

from __future__ import annotations

import pytest

from assistant.assistant import Assistant
from assistant.chunking import split_paragraphs

pytestmark = pytest.mark.slow


def _article_paragraphs(assistant: Assistant) -> list[str]:
    text = assistant.corpus.text_of("article")
    return [text[spans[0].start : spans[-1].end] for spans in split_paragraphs(text, 0, len(text)) if spans]


@pytest.mark.parametrize(
    "question",
    [
        "How does AI stem separation work, technically?",
        "Does a cleaner extraction change whether a mashup is legal?",
        "Why do rights holders go after successful tracks?",
    ],
)
def test_a_short_paragraph_that_answers_is_quoted_whole(assistant: Assistant, question: str) -> None:
    answer = assistant.ask(question)
    assert answer.answered
    assert any(paragraph in answer.citations[0].quote for paragraph in _article_paragraphs(assistant))
    # Further sentences fill the room left, but never push a cited section out of the first three quotes.
    assert len(answer.citations) <= 3


def test_a_paragraph_keeps_the_point_its_best_matching_sentence_leaves_out(assistant: Assistant) -> None:
    # The best-matching sentence is the "Incorporating them into a commercially released track" one;
    # the paragraph brings the contrast with a private DJ set along.
    answer = assistant.ask("Does it matter whether I play AI stems in a private DJ set or release them?")
    assert "private DJ set" in answer.answer
    assert "commercially released" in answer.answer


def test_a_situation_cites_the_bullet_that_applies_and_no_other(assistant: Assistant) -> None:
    answer = assistant.ask("gonna relese my remix on beatport next week, used ai stems from the orignal. am i ok??")
    assert [e.trigger for e in answer.escalations] == ["commercial_release"]
    bullets = [c.quote for c in answer.citations if c.section == "When to Ask a Lawyer"]
    assert bullets == [f"- {answer.escalations[0].text}"]
    # The substance comes first; the bullet follows it.
    assert answer.citations[0].section != "When to Ask a Lawyer"


def test_a_sentence_counts_with_its_paragraph(assistant: Assistant) -> None:
    from assistant.answer import CompositionRequest
    from assistant.extractive import ExtractiveComposer

    question = "Why shouldn't I assume a free vocal remover is automatically fine to use?"
    prepared, vector, passages = assistant._retrieve(question, [], [], assistant.settings.k)
    request = CompositionRequest(query=prepared, query_vector=vector, passages=passages)
    bank = assistant._sentences
    with_context = ExtractiveComposer(assistant.corpus, bank, idf=assistant._retriever.idf)
    alone = ExtractiveComposer(assistant.corpus, bank, idf=assistant._retriever.idf)
    alone.paragraph_weight = 0.0
    scores = {c.sentence: c.score for c in alone._candidates(request)}
    for candidate in with_context._candidates(request):
        sentences = bank.sentences(candidate.sentence.chunk_id)
        in_context = bank.paragraph_similarities(candidate.sentence.chunk_id, vector)[
            sentences.index(candidate.sentence)
        ]
        assert candidate.score == pytest.approx(scores[candidate.sentence] + with_context.paragraph_weight * in_context)
    # In context, "Many users assume that because the software is freely available…" answers the question.
    assert "freely available" in with_context.compose(request).answer


@pytest.mark.parametrize(
    ("situation", "trigger"),
    [
        ("We're launching a subscription site that splits customers' songs into stems with AI.", "building_product"),
        ("My label is putting my bootleg edit out on Spotify and Apple Music next month.", "commercial_release"),
        ("I just got a copyright claim on my mashup upload. What do I do?", "claim_or_takedown"),
        ("I need to find out whether my sample-based remix counts as fair use.", "copyright_exception"),
        ("I'm negotiating a remix license with the artist's publisher right now.", "license_negotiation"),
    ],
)
def test_the_answer_cites_the_bullet_for_the_users_situation(
    assistant: Assistant, situation: str, trigger: str
) -> None:
    answer = assistant.ask(situation)
    assert trigger in [e.trigger for e in answer.escalations]
    bullet = next(e.text for e in answer.escalations if e.trigger == trigger)
    assert f"- {bullet}" in [c.quote for c in answer.citations]


@pytest.mark.parametrize(
    "question",
    [
        "Is anyone actually suing over AI training data right now?",
        "What should I do before using a vocal remover on a song?",
        "Is the article legal advice?",
    ],
)
def test_the_disclaimer_and_the_source_list_never_trail_an_answer(assistant: Assistant, question: str) -> None:
    answer = assistant.ask(question)
    # They may answer a question about themselves, but never ride along after another section.
    for citation in answer.citations[1:]:
        if citation.section != answer.citations[0].section:
            assert citation.section not in {"Legal Disclaimer", "Sources"}


@pytest.mark.parametrize(
    "question",
    [
        "Can producers sell tracks made with AI stems?",
        "Is it risky to upload a remix built on separated stems?",
        "What parts of a song can these AI tools pull apart?",
    ],
)
def test_a_general_question_never_opens_with_a_lawyer_bullet_or_the_source_list(
    assistant: Assistant, question: str
) -> None:
    answer = assistant.ask(question)
    assert answer.answered and not answer.escalations
    assert answer.citations[0].section not in {"When to Ask a Lawyer", "Sources"}
    assert "Sources" not in {c.section for c in answer.citations}


@pytest.mark.parametrize(
    ("question", "url"),
    [
        (
            "Does the article give a URL for the copyright statute?",
            "https://www.copyright.gov/title17/92chap1.html#106",
        ),
        ("Is there a link to the WIPO treaty text?", "https://www.wipo.int/treaties/en/text/245166"),
    ],
)
def test_a_question_about_the_articles_references_is_answered_from_its_sources(
    assistant: Assistant, question: str, url: str
) -> None:
    answer = assistant.ask(question)
    assert answer.citations[0].section == "Sources"
    assert url in answer.answer


def test_an_item_of_another_sections_list_starts_a_list_of_its_own() -> None:
    from assistant.extractive import _join

    joined = _join(["Lead-in— [1]", "- (1) first [1]", "- (2) second [1]", "* (4) of another section [2]"])
    assert joined == "Lead-in— [1]\n\n- (1) first [1]\n- (2) second [1]\n\n* (4) of another section [2]"
