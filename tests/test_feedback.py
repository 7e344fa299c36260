"""What a vote is and how it is checked (the store that keeps votes is tested in test_store.py)."""

from __future__ import annotations

import pytest

from assistant.errors import InputError, StoreError
from assistant.feedback import (
    MAX_COMMENT_CHARS,
    FeedbackStoreError,
    UnknownAnswerError,
    check_answer_id,
    check_vote,
    clean_comment,
)

ANSWER_ID = "0123456789abcdef0123456789abcdef"


def test_answer_ids_are_32_lower_case_hex_digits() -> None:
    assert check_answer_id(ANSWER_ID) == ANSWER_ID
    for bad in ("not-an-id", ANSWER_ID.upper(), ANSWER_ID[:-1], ANSWER_ID + "0", "", "g" * 32):
        with pytest.raises(InputError, match="answer_id"):
            check_answer_id(bad)


def test_votes_are_up_or_down() -> None:
    assert (check_vote("up"), check_vote("down")) == ("up", "down")
    for bad in ("meh", "UP", "", "1"):
        with pytest.raises(InputError, match="vote must be"):
            check_vote(bad)


def test_comments_are_trimmed_empty_means_none_and_length_is_capped() -> None:
    assert clean_comment("  clear answer  ") == "clear answer"
    assert clean_comment("   ") is None
    assert clean_comment(None) is None
    assert clean_comment("x" * MAX_COMMENT_CHARS) == "x" * MAX_COMMENT_CHARS
    with pytest.raises(InputError, match="under 2000"):
        clean_comment("x" * (MAX_COMMENT_CHARS + 1))


def test_error_statuses() -> None:
    assert UnknownAnswerError.status_code == 404
    assert issubclass(FeedbackStoreError, StoreError) and FeedbackStoreError.status_code == 503
