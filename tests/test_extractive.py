"""How the extractive composer shapes an answer: lead, supporting points, lists, hedges, the situation's bullet.

The composer is given rankings chosen here (over the real sentence table), so each rule is checked on its
own; the end-to-end tests at the bottom use the real decisions.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from assistant.answer import CompositionRequest
from assistant.assistant import Assistant
from assistant.conversation import TurnRequest
from assistant.decisions.judge import Judgement, bullet_rows
from assistant.extractive import ExtractiveComposer
from assistant.retrieval import Ranking
from assistant.sentences import Sentence

pytestmark = pytest.mark.slow


def _row(assistant: Assistant, starts: str, section: str | None = None) -> int:
    return next(
        s.row
        for s in assistant.table.sentences
        if s.text.startswith(starts) and (section is None or s.section == section)
    )


def _compose(
    assistant: Assistant,
    rows: list[int],
    probabilities: list[float],
    *,
    wants_list: bool = False,
    covered: bool = True,
    situation: tuple[int, ...] = (),
    threshold: float = 0.5,
) -> tuple[str, list[Sentence]]:
    ranking = Ranking(np.array(rows), np.array(probabilities), np.zeros((len(rows), 1)))
    judgement = Judgement(np.zeros(len(assistant.table.sections)), ranking, covered, 0.9, wants_list)
    view = assistant._views.views([TurnRequest("a question")])[0]
    composer = ExtractiveComposer(assistant.corpus, assistant.table, threshold)
    composition = composer.compose(CompositionRequest(view, judgement, situation))
    quoted = [
        s
        for c in composition.citations
        for s in assistant.table.sentences
        if s.text in c.quote and s.section == c.section
    ]
    return composition.answer, quoted


def test_the_lead_comes_first_then_at_most_three_supporting_points(assistant: Assistant) -> None:
    rows = [
        _row(assistant, "Spotify, Apple Music"),
        _row(assistant, "- Do not extract stems from streaming"),
        _row(assistant, "YouTube has specific policies"),
        _row(assistant, "- Understand that platform terms"),
        _row(assistant, "Social media platforms increasingly"),
        _row(assistant, "- Read the terms of service"),
    ]
    answer, _ = _compose(assistant, rows, [0.95, 0.9, 0.8, 0.7, 0.6, 0.55])
    assert answer.startswith("Spotify, Apple Music")
    assert "Social media platforms" not in answer and "Read the terms of service" not in answer
    assert len(re.findall(r"\[\d+\]", answer)) >= 4


def test_without_a_strong_supporting_point_the_leads_own_section_gives_context(assistant: Assistant) -> None:
    lead = _row(assistant, "Spotify, Apple Music")
    other_section = _row(assistant, "- Read the terms of service")
    same_section = _row(assistant, "YouTube has specific policies")
    _answer, quoted = _compose(assistant, [lead, other_section, same_section], [0.9, 0.2, 0.1])
    assert [s.row for s in quoted] == [lead, same_section]


def test_a_whole_list_is_given_when_asked_for(assistant: Assistant) -> None:
    item = _row(assistant, "- Read the terms of service")
    answer, quoted = _compose(assistant, [item], [0.9], wants_list=True)
    assert len([s for s in quoted if s.section == "Practical Checklist"]) == 8
    assert answer.count("\n- ") == 7


def test_labelled_paragraphs_are_a_list_and_labels_are_lead_ins(assistant: Assistant) -> None:
    item = _row(assistant, "Commission the work.")
    answer, quoted = _compose(assistant, [item], [0.9], wants_list=True)
    assert [s.label for s in quoted] == [
        "License the multitrack.",
        "Use royalty-free stem packs.",
        "Commission the work.",
        "Work with the rights holder.",
    ]
    assert "**Commission the work.** Hire session musicians" in answer
    assert not re.search(r"(^|\n)Commission the work\. \[", answer)


def test_a_claim_keeps_its_hedge(assistant: Assistant) -> None:
    claim = _row(assistant, "Derivative works. The output of a stem separator")
    answer, _ = _compose(assistant, [claim], [0.9])
    assert "arguably" in answer and "not airtight" in answer


def test_no_bullet_is_quoted_beside_the_notice_of_the_users_situation(assistant: Assistant) -> None:
    bullets = bullet_rows(assistant.table)
    substance = _row(assistant, "YouTube has specific policies")
    rows = [bullets["claim_or_takedown"], bullets["license_negotiation"], substance]
    _answer, quoted = _compose(assistant, rows, [0.95, 0.9, 0.8], situation=(bullets["claim_or_takedown"],))
    assert quoted[0].row == substance
    assert not {bullets["claim_or_takedown"], bullets["license_negotiation"]} & {s.row for s in quoted}


def test_the_bullet_is_quoted_when_it_is_all_the_ranking_has(assistant: Assistant) -> None:
    bullets = bullet_rows(assistant.table)
    rows = [bullets["claim_or_takedown"]]
    _answer, quoted = _compose(assistant, rows, [0.95], situation=(bullets["claim_or_takedown"],))
    assert [s.row for s in quoted] == [bullets["claim_or_takedown"]]


def test_an_uncovered_question_names_the_closest_sections(assistant: Assistant) -> None:
    rows = [_row(assistant, "Spotify, Apple Music"), _row(assistant, "- Read the terms of service")]
    answer, quoted = _compose(assistant, rows, [0.4, 0.3], covered=False)
    assert quoted == [] and "do not cover" in answer
    assert "“Platform Terms and Conditions”, “Practical Checklist”" in answer


def test_every_quote_is_an_exact_slice_of_its_file(assistant: Assistant) -> None:
    for question in ("Is an isolated vocal a derivative work?", "What does § 107 say about fair use?"):
        for citation in assistant.ask(question).citations:
            assert citation.quote in assistant.corpus.text_of(citation.source_id)


def test_a_follow_up_gets_something_new(assistant: Assistant) -> None:
    first = assistant.ask("Does Spotify allow stem extraction?")
    history = [
        {"role": "user", "content": "Does Spotify allow stem extraction?"},
        {"role": "assistant", "content": first.answer, "answer_id": first.answer_id},
    ]
    second = assistant.ask("what about if it's only for my DJ sets?", history)
    assert second.answered
    assert not {c.quote for c in first.citations} & {c.quote for c in second.citations}
