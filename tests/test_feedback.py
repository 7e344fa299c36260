from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.errors import InputError
from assistant.feedback import (
    DB_NAME,
    MAX_COMMENT_CHARS,
    FeedbackStore,
    FeedbackStoreError,
    RecentAnswers,
    UnknownAnswerError,
)

ANSWER_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"


@pytest.fixture
def store(tmp_path: Path) -> FeedbackStore:
    feedback = FeedbackStore(tmp_path / "data")
    yield feedback
    feedback.close()


def test_vote_is_stored_with_question_answer_and_time(store: FeedbackStore) -> None:
    record = store.record(ANSWER_ID, "Can I sample?", "Only with a licence. [1]", "up", "  clear answer  ")
    assert record.answer_id == ANSWER_ID
    assert (record.question, record.answer, record.vote, record.comment) == (
        "Can I sample?",
        "Only with a licence. [1]",
        "up",
        "clear answer",
    )
    assert record.created_at.endswith("+00:00")
    assert store.get(ANSWER_ID) == record
    assert store.count() == 1


def test_second_vote_updates_the_row_and_keeps_an_earlier_comment(store: FeedbackStore) -> None:
    store.record(ANSWER_ID, "q", "a", "up", "useful")
    updated = store.record(ANSWER_ID, "q", "a", "down")
    assert updated.vote == "down"
    assert updated.comment == "useful"
    assert store.count() == 1
    store.record(OTHER_ID, "q2", "a2", "down", "")
    assert store.get(OTHER_ID).comment is None
    assert store.count() == 2


def test_database_runs_in_wal_mode_with_full_sync(store: FeedbackStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection: the store's own must be FULL (2).
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2


@pytest.mark.parametrize(
    ("answer_id", "vote", "comment", "problem"),
    [
        ("not-an-id", "up", None, "answer_id"),
        (ANSWER_ID.upper(), "up", None, "answer_id"),
        (ANSWER_ID, "meh", None, "vote"),
        (ANSWER_ID, "up", "x" * (MAX_COMMENT_CHARS + 1), "comment"),
    ],
)
def test_bad_feedback_is_rejected_and_changes_nothing(
    store: FeedbackStore, answer_id: str, vote: str, comment: str | None, problem: str
) -> None:
    with pytest.raises(InputError, match=problem):
        store.record(answer_id, "q", "a", vote, comment)  # type: ignore[arg-type]
    assert store.count() == 0


def test_feedback_survives_reopening(tmp_path: Path) -> None:
    first = FeedbackStore(tmp_path)
    first.record(ANSWER_ID, "q", "a", "down", "wrong section")
    first.close()
    second = FeedbackStore(tmp_path)
    try:
        assert second.get(ANSWER_ID).comment == "wrong section"
    finally:
        second.close()


def test_acknowledged_feedback_survives_kill_9(tmp_path: Path) -> None:
    """A writer that printed 'saved' is killed without any chance to clean up; the row is still there."""
    writer = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from assistant.feedback import FeedbackStore
        store = FeedbackStore(Path({str(tmp_path)!r}))
        store.record({ANSWER_ID!r}, "question", "answer", "up", "kept")
        print("saved", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "saved"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert (tmp_path / f"{DB_NAME}-wal").exists()  # never checkpointed: the row lives only in the WAL
    reopened = FeedbackStore(tmp_path)
    try:
        record = reopened.get(ANSWER_ID)
        assert record is not None
        assert (record.vote, record.comment) == ("up", "kept")
    finally:
        reopened.close()


def test_unwritable_data_dir_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(FeedbackStoreError, match="feedback database"):
        FeedbackStore(blocker / "data")


def test_recent_answers_are_bounded_and_prefer_the_servers_copy() -> None:
    recent = RecentAnswers(capacity=2)
    recent.remember("a" * 32, "q1", "a1")
    recent.remember("b" * 32, "q2", "a2")
    recent.remember("c" * 32, "q3", "a3")
    assert recent.lookup("a" * 32) is None
    assert recent.resolve("b" * 32, "client question", "client answer") == ("q2", "a2")
    assert recent.resolve("a" * 32, "client question", "client answer") == ("client question", "client answer")
    with pytest.raises(UnknownAnswerError) as raised:
        recent.resolve("a" * 32, None, None)
    assert raised.value.status_code == 404
