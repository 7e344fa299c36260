"""Follow-ups resolved from earlier turns (pure functions: no model needed)."""

from __future__ import annotations

import pytest

from assistant.conversation import parse_history, resolve
from assistant.schemas import Message


def _turns(question: str, reply: str) -> list[Message]:
    return [Message(role="user", content=question), Message(role="assistant", content=reply)]


def test_an_ordinal_picks_the_item_of_the_previous_answers_list() -> None:
    reply = "- Read the terms of service [1]\n- Do not extract stems from streaming platforms [1]"
    resolved = resolve("tell me more about the second one", _turns("What's on the checklist?", reply))
    assert resolved.is_follow_up
    assert resolved.query == "Do not extract stems from streaming platforms"


@pytest.mark.parametrize(
    ("reply", "ordinal", "item"),
    [
        (
            "It suggests four: 1) license the multitrack, 2) use royalty-free stem packs, "
            "3) commission the work, and 4) work with the rights holder.",
            "the third one",
            "commission the work",
        ),
        (
            "It lists five: what you do with the stems, whether you get caught, the commercial "
            "significance, jurisdiction, and the rights holder's approach.",
            "the second one",
            "whether you get caught",
        ),
        ("Two things: (1) read the terms; (2) keep records.", "the last one", "keep records"),
    ],
)
def test_an_ordinal_picks_the_item_of_a_list_written_in_one_sentence(reply: str, ordinal: str, item: str) -> None:
    resolved = resolve(f"Can you expand on {ordinal}?", _turns("What does the article list?", reply))
    assert resolved.query == item


def test_an_ordinal_past_the_end_of_a_one_sentence_reply_falls_back_to_the_earlier_question() -> None:
    resolved = resolve("tell me more about the fourth one", _turns("What is Content ID?", "It matches uploads."))
    assert resolved.is_follow_up
    assert "What is Content ID?" in resolved.query


def test_a_question_that_stands_alone_is_left_as_it_is() -> None:
    question = "Does Spotify allow stem extraction from its catalogue?"
    assert resolve(question, _turns("What is Content ID?", "It matches uploads.")).query == question


def test_bad_history_items_are_reported_by_position() -> None:
    with pytest.raises(ValueError, match="history item 2"):
        parse_history([{"role": "user", "content": "hi"}, {"role": "robot", "content": "x"}])
