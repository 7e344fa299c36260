"""Durable thumbs up/down feedback, kept in SQLite under ``settings.data_dir``.

The database runs in WAL mode with ``synchronous=FULL`` and every write is its
own committed transaction, so a vote the server has acknowledged survives a
restart, a ``kill -9`` and a power cut. One row per answer: voting again or
adding a comment later updates that row, it never adds a second one.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from assistant.errors import AssistantError, InputError

Vote = Literal["up", "down"]
DB_NAME = "feedback.sqlite3"
MAX_COMMENT_CHARS = 2000
MAX_STORED_TEXT_CHARS = 20_000
ANSWER_ID = re.compile(r"^[0-9a-f]{32}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    answer_id  TEXT PRIMARY KEY,
    question   TEXT NOT NULL,
    answer     TEXT NOT NULL,
    vote       TEXT NOT NULL CHECK (vote IN ('up', 'down')),
    comment    TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""

_UPSERT = """
INSERT INTO feedback (answer_id, question, answer, vote, comment, created_at, updated_at)
VALUES (:answer_id, :question, :answer, :vote, :comment, :now, :now)
ON CONFLICT (answer_id) DO UPDATE SET
    vote = excluded.vote,
    comment = COALESCE(excluded.comment, feedback.comment),
    updated_at = excluded.updated_at
"""


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
    """Feedback names an answer this server never gave (or forgot after a restart) and brings no text."""

    status_code = 404


class FeedbackStoreError(AssistantError):
    """The feedback database cannot be opened or written."""

    status_code = 503


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


class FeedbackStore:
    """A small SQLite store that is safe to share between server threads."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / DB_NAME
        self._lock = threading.Lock()
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise FeedbackStoreError(f"Cannot open the feedback database at {self.path}: {error}") from error

    def record(
        self, answer_id: str, question: str, answer: str, vote: Vote, comment: str | None = None
    ) -> FeedbackRecord:
        """Store a vote (and comment); returns the row only after it is committed to disk."""
        check_answer_id(answer_id)
        if vote not in ("up", "down"):
            raise InputError("vote must be 'up' or 'down'.")
        comment = clean_comment(comment)
        params = {
            "answer_id": answer_id,
            "question": question[:MAX_STORED_TEXT_CHARS],
            "answer": answer[:MAX_STORED_TEXT_CHARS],
            "vote": vote,
            "comment": comment,
            "now": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        with self._lock:
            try:
                self._db.execute(_UPSERT, params)
            except sqlite3.Error as error:
                raise FeedbackStoreError(f"Your feedback could not be saved ({error}); please try again.") from error
        stored = self.get(answer_id)
        if stored is None:  # pragma: no cover - the row was just written
            raise FeedbackStoreError("Your feedback could not be saved; please try again.")
        return stored

    def get(self, answer_id: str) -> FeedbackRecord | None:
        """The feedback stored for one answer, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT answer_id, question, answer, vote, comment, created_at, updated_at"
                " FROM feedback WHERE answer_id = ?",
                (answer_id,),
            ).fetchone()
        if row is None:
            return None
        keys = ("answer_id", "question", "answer", "vote", "comment", "created_at", "updated_at")
        return FeedbackRecord(**dict(zip(keys, row, strict=True)))

    def count(self) -> int:
        """How many answers have feedback."""
        with self._lock:
            (total,) = self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()
        return int(total)

    def close(self) -> None:
        """Checkpoint the WAL into the main file and close the connection."""
        with self._lock:
            # If the checkpoint fails the WAL is still valid; SQLite replays it on the next open.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()


class RecentAnswers:
    """The last answers this server gave, so feedback can name an answer by id alone.

    Bounded, in memory: after a restart (or for very old answers) the client
    sends the question and answer text along with its vote instead.
    """

    def __init__(self, capacity: int = 5000) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, answer_id: str, question: str, answer: str) -> None:
        """Keep one answer, forgetting the oldest beyond capacity."""
        with self._lock:
            self._items[answer_id] = (question, answer)
            self._items.move_to_end(answer_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def lookup(self, answer_id: str) -> tuple[str, str] | None:
        """(question, answer) for an answer id, if still remembered."""
        with self._lock:
            return self._items.get(answer_id)

    def resolve(self, answer_id: str, question: str | None, answer: str | None) -> tuple[str, str]:
        """The question and answer a vote refers to: the server's own copy first, else what the client sent."""
        known = self.lookup(answer_id)
        if known is not None:
            return known
        if question and answer:
            return question, answer
        raise UnknownAnswerError(
            "This answer is no longer known to the server; send its question and answer text with the vote."
        )
