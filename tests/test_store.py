"""The store against both real databases: SQLite in a temp folder and a real PostgreSQL server."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from store_fixtures import Postgres, postgres

from assistant.errors import InputError, StoreError
from assistant.feedback import MAX_COMMENT_CHARS
from assistant.settings import Settings
from assistant.store import DB_NAME, IssuedAnswer, LoggedQuestion, SqlStore, database_url, open_store

__all__ = ["postgres"]

ANSWER_ID = "0123456789abcdef0123456789abcdef"
OTHER_ID = "fedcba9876543210fedcba9876543210"


def make_settings(tmp_path: Path, database_url: str | None = None) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", database_url=database_url)  # type: ignore[call-arg]


@pytest.fixture(params=["sqlite", "postgresql"])
def settings_for(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for a fresh, empty database of each kind."""
    if request.param == "sqlite":
        return make_settings(tmp_path)
    server: Postgres = request.getfixturevalue("postgres")
    return make_settings(tmp_path, server.new_database())


@pytest.fixture
def store(settings_for: Settings) -> Iterator[SqlStore]:
    opened = open_store(settings_for)
    yield opened
    opened.close()


def issue(store: SqlStore, answer_id: str = ANSWER_ID, question: str = "Can I sample?", covered: bool = True) -> None:
    logged = LoggedQuestion(question=question, covered=covered, sections=["Art — §1"], triggers=[], latency_ms=12.5)
    store.record_answer(IssuedAnswer(answer_id=answer_id, question=question, answer="Only with a licence. [1]"), logged)


def test_the_settings_choose_the_backend(store: SqlStore, settings_for: Settings) -> None:
    expected = "sqlite" if settings_for.database_url is None else "postgresql"
    assert store.backend == expected
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == "0003"


def test_issued_answers_are_kept_and_found_by_id(store: SqlStore) -> None:
    assert store.get_answer(ANSWER_ID) is None
    issue(store)
    found = store.get_answer(ANSWER_ID)
    assert found is not None
    assert (found.question, found.answer) == ("Can I sample?", "Only with a licence. [1]")
    assert found.created_at.endswith("+00:00")
    with pytest.raises(StoreError):  # an answer id is issued once
        issue(store)


def test_vote_is_stored_with_question_answer_and_time(store: SqlStore) -> None:
    record = store.record_feedback(ANSWER_ID, "Can I sample?", "Only with a licence. [1]", "up", "  clear answer  ")
    assert (record.answer_id, record.question, record.answer, record.vote, record.comment) == (
        ANSWER_ID,
        "Can I sample?",
        "Only with a licence. [1]",
        "up",
        "clear answer",
    )
    assert record.created_at.endswith("+00:00")
    assert store.get_feedback(ANSWER_ID) == record
    assert store.count_feedback() == 1


def test_second_vote_updates_the_row_and_keeps_an_earlier_comment(store: SqlStore) -> None:
    store.record_feedback(ANSWER_ID, "q", "a", "up", "useful")
    updated = store.record_feedback(ANSWER_ID, "q", "a", "down")
    assert updated.vote == "down" and updated.comment == "useful"
    assert store.count_feedback() == 1
    store.record_feedback(OTHER_ID, "q2", "a2", "down", "")
    other = store.get_feedback(OTHER_ID)
    assert other is not None and other.comment is None
    assert store.count_feedback() == 2


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
    store: SqlStore, answer_id: str, vote: str, comment: str | None, problem: str
) -> None:
    with pytest.raises(InputError, match=problem):
        store.record_feedback(answer_id, "q", "a", vote, comment)  # type: ignore[arg-type]
    assert store.count_feedback() == 0


def test_question_log_keeps_what_was_asked_and_filters_declined(store: SqlStore) -> None:
    issue(store, ANSWER_ID, "Can I sample?", covered=True)
    issue(store, OTHER_ID, "What is the tax on royalties?", covered=False)
    everything = store.questions()
    assert [entry.question for entry in everything] == ["What is the tax on royalties?", "Can I sample?"]
    declined = store.questions(covered=False)
    assert [entry.question for entry in declined] == ["What is the tax on royalties?"]
    entry = store.questions(covered=True)[0]
    assert (entry.covered, entry.sections, entry.triggers, entry.latency_ms) == (True, ["Art — §1"], [], 12.5)
    assert store.questions(limit=1)[0].question == "What is the tax on royalties?"


def test_an_answer_and_its_log_line_are_committed_together(store: SqlStore) -> None:
    issue(store)
    with pytest.raises(StoreError):
        issue(store, question="A second line that must not be logged")
    assert len(store.questions()) == 1


def test_data_survives_reopening(settings_for: Settings) -> None:
    first = open_store(settings_for)
    issue(first)
    first.record_feedback(ANSWER_ID, "q", "a", "down", "wrong section")
    first.close()
    second = open_store(settings_for)
    try:
        feedback = second.get_feedback(ANSWER_ID)
        assert feedback is not None and feedback.comment == "wrong section"
        assert second.get_answer(ANSWER_ID) is not None
        assert len(second.questions()) == 1
    finally:
        second.close()


def test_replicas_starting_at_once_migrate_once(settings_for: Settings) -> None:
    """Four stores opened at the same moment on an empty database all come up on the current schema."""
    opened: list[SqlStore] = []
    failures: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        barrier.wait()
        try:
            opened.append(open_store(settings_for))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    try:
        assert failures == []
        assert len(opened) == 4
        issue(opened[0])
        assert all(store.get_answer(ANSWER_ID) is not None for store in opened)
    finally:
        for store in opened:
            store.close()


def test_sqlite_runs_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    store = open_store(make_settings(tmp_path))
    try:
        with sqlite3.connect(tmp_path / "data" / DB_NAME) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # synchronous is per connection: the store's own must be FULL (2).
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        store.close()


def test_a_database_from_before_migrations_is_adopted_with_its_feedback(tmp_path: Path) -> None:
    """The feedback table the server kept before the store had migrations is kept, rows and all."""
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as db:
        db.execute(
            "CREATE TABLE feedback (answer_id TEXT PRIMARY KEY, question TEXT NOT NULL, answer TEXT NOT NULL,"
            " vote TEXT NOT NULL CHECK (vote IN ('up', 'down')), comment TEXT, created_at TEXT NOT NULL,"
            " updated_at TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO feedback VALUES (?, 'old q', 'old a', 'up', 'kept', '2024-01-01T00:00:00+00:00',"
            " '2024-01-01T00:00:00+00:00')",
            (ANSWER_ID,),
        )
    store = open_store(make_settings(tmp_path))
    try:
        old = store.get_feedback(ANSWER_ID)
        assert old is not None and (old.question, old.comment) == ("old q", "kept")
        issue(store, OTHER_ID)
        assert store.get_answer(OTHER_ID) is not None
    finally:
        store.close()


def test_acknowledged_feedback_survives_kill_9_on_sqlite(tmp_path: Path) -> None:
    """A writer that printed 'saved' is killed without any chance to clean up; the row is still there."""
    writer = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from assistant.settings import Settings
        from assistant.store import open_store
        store = open_store(Settings(_env_file=None, data_dir=Path({str(tmp_path / "data")!r})))
        store.record_feedback({ANSWER_ID!r}, "question", "answer", "up", "kept")
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
        if process.stdout is not None:
            process.stdout.close()
    assert (tmp_path / "data" / f"{DB_NAME}-wal").exists()  # never checkpointed: the row lives only in the WAL
    reopened = open_store(make_settings(tmp_path))
    try:
        record = reopened.get_feedback(ANSWER_ID)
        assert record is not None and (record.vote, record.comment) == ("up", "kept")
    finally:
        reopened.close()


def test_unwritable_data_dir_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="Cannot open the database"):
        open_store(Settings(_env_file=None, data_dir=blocker / "data"))  # type: ignore[call-arg]


def test_unreachable_postgres_gives_a_clear_error_without_the_password(tmp_path: Path) -> None:
    from server_fixtures import free_port

    url = f"postgresql+psycopg://user:s3cret@127.0.0.1:{free_port()}/db"
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=url, database_timeout=2)  # type: ignore[call-arg]
    with pytest.raises(StoreError, match="Cannot open the database") as raised:
        open_store(settings)
    assert "s3cret" not in str(raised.value) and "reachable" in str(raised.value)


def test_a_bad_database_url_is_refused_with_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a database URL"):
        database_url(make_settings(tmp_path, "not a url"))
    with pytest.raises(StoreError, match="not supported"):
        SqlStore(sa.make_url("mysql://x@localhost/db"))


def test_the_schema_head_is_alembics_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from assistant.store import MIGRATIONS, SCHEMA_HEAD

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_HEAD]


def test_a_store_at_the_head_opens_without_alembic_and_an_older_one_is_upgraded(settings_for: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    from assistant.store import MIGRATIONS, SCHEMA_HEAD, schema_version

    open_store(settings_for).close()  # an empty database, migrated to the head
    opened = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from assistant.settings import Settings
                from assistant.store import open_store
                settings = Settings(_env_file=None, data_dir=sys.argv[1], database_url=sys.argv[2] or None)
                open_store(settings).close()
                print("alembic" in sys.modules)
                """
            ),
            str(settings_for.data_dir),
            settings_for.database_url.get_secret_value() if settings_for.database_url else "",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "False"
    # One migration back: the next open upgrades it again, with Alembic.
    engine = sa.create_engine(database_url(settings_for))
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0002")
        with engine.connect() as connection:
            assert schema_version(connection) == "0002"
        store = open_store(settings_for)
        try:
            issue(store)
            with engine.connect() as connection:
                assert schema_version(connection) == SCHEMA_HEAD
                columns = {c["name"] for c in sa.inspect(connection).get_columns("answers")}
            assert {"reply", "earlier"} <= columns
        finally:
            store.close()
    finally:
        engine.dispose()
