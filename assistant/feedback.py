"""Thumbs up/down feedback on an answer: what a vote is, how it is checked, what is stored.

The store itself (``assistant/store.py``) keeps one row per answer: voting
again or adding a comment later updates that row, it never adds a second one.
A vote is accepted only for an answer the service itself gave; the question
and answer text stored with it are the service's own copy, never a client's.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field

from assistant.errors import InputError, StoreError

Vote = Literal["up", "down"]
MAX_COMMENT_CHARS = 2000
MAX_STORED_TEXT_CHARS = 20_000
ANSWER_ID = re.compile(r"^[0-9a-f]{32}$")


class FeedbackRecord(BaseModel):
    """One stored piece of feedback, as the database holds it."""

    answer_id: str = Field(description="Id of the answer the feedback is about.")
    question: str = Field(description="The question that answer replied to.")
    answer: str = Field(description="The answer text as the user saw it (without disclaimer).")
    vote: Vote = Field(description="'up' or 'down'.")
    comment: str | None = Field(default=None, description="Optional free-text comment.")
    created_at: str = Field(description="When the first vote arrived (UTC, ISO 8601).")
    updated_at: str = Field(description="When the vote or comment last changed (UTC, ISO 8601).")


class UnknownAnswerError(InputError):
    """Feedback names an answer this service never gave."""

    status_code = 404


class FeedbackStoreError(StoreError):
    """A vote could not be written to the database."""


def clean_comment(comment: str | None) -> str | None:
    """Trim a comment; empty means none. Raises :class:`InputError` when it is too long."""
    if comment is None:
        return None
    comment = comment.strip()
    if len(comment) > MAX_COMMENT_CHARS:
        raise InputError(f"The comment is {len(comment)} characters long; please keep it under {MAX_COMMENT_CHARS}.")
    return comment or None


def check_answer_id(answer_id: str) -> str:
    """Answer ids are 32 lower-case hex digits; anything else is rejected before touching the database."""
    if not ANSWER_ID.fullmatch(answer_id):
        raise InputError("answer_id must be the 32-character id returned with the answer.")
    return answer_id


def check_vote(vote: str) -> Vote:
    """A vote is 'up' or 'down'."""
    if vote == "up":
        return "up"
    if vote == "down":
        return "down"
    raise InputError("vote must be 'up' or 'down'.")
