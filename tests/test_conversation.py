"""Follow-ups read from structured earlier turns."""

from __future__ import annotations

import pytest

from assistant.assistant import Assistant
from assistant.conversation import (
    CONVERSATION_TURNS,
    EarlierAnswer,
    conversation,
    earlier_answer,
    parse_history,
    points_at_an_item,
    quoted_rows,
    referenced_item,
)
from assistant.schemas import Citation, Message


def test_bad_history_items_are_reported_by_position() -> None:
    with pytest.raises(ValueError, match="history item 2"):
        parse_history([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}])
    with pytest.raises(ValueError, match="history item 1 has a malformed"):
        parse_history([{"role": "assistant", "content": "x", "citations": [{"n": "one"}]}])


def test_an_assistant_turn_keeps_its_answer_id_and_citations() -> None:
    citation = {"n": 1, "source_id": "article", "source_title": "T", "section": "S", "url": None, "quote": "q"}
    (turn,) = parse_history([{"role": "assistant", "content": "x", "answer_id": "a1", "citations": [citation]}])
    assert turn.answer_id == "a1" and turn.citations == [Citation(**citation)]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("question", "points"),
    [
        ("tell me more about the second one", True),
        ("Can you expand on the 3rd point?", True),
        ("what about number 2", True),
        ("Is the first track I release risky?", False),
        ("What does § 107 say?", False),
    ],
)
def test_a_pointer_at_an_earlier_item_is_recognised(question: str, points: bool) -> None:
    assert points_at_an_item(question) is points


def test_the_conversation_reads_newest_first_and_only_so_far_back() -> None:
    earlier = [f"m{i}" for i in range(6)]
    text = conversation("now", earlier)
    assert text.startswith("now") and "m5" in text and "m0" not in text
    assert text.count(" \n ") == CONVERSATION_TURNS


@pytest.mark.slow
def test_an_earlier_answer_is_known_by_its_citations_or_its_id(assistant: Assistant) -> None:
    answer = assistant.ask("What are the safer alternatives to extracting stems?")
    rows = quoted_rows(assistant.table, answer.citations)
    assert rows
    by_citations = [Message(role="assistant", content="whatever", citations=answer.citations)]
    by_id = [Message(role="assistant", content="whatever", answer_id=answer.answer_id)]
    unknown = [Message(role="assistant", content=answer.answer)]
    lookup = {answer.answer_id: answer.citations}.get
    assert earlier_answer(assistant.table, by_citations, lookup).rows == rows
    assert earlier_answer(assistant.table, by_id, lookup).rows == rows
    assert earlier_answer(assistant.table, unknown, lookup).rows == ()


@pytest.mark.slow
def test_an_ordinal_picks_the_item_of_the_earlier_answer(assistant: Assistant) -> None:
    items = [s for s in assistant.table.sentences if s.section == "Safer Alternatives" and s.label]
    answer = EarlierAnswer(tuple(s.row for s in items))
    second = referenced_item("tell me more about the second one", answer, assistant.table)
    assert second is not None and second.label == "Use royalty-free stem packs."
    assert referenced_item("and the last one?", answer, assistant.table) == items[-1]
    assert referenced_item("what about the fifth one", answer, assistant.table) is None
