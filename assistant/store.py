"""The service's shared state in one SQL database: issued answers, feedback on them, and the question log.

Every replica of the server talks to the same database, so an answer given by one replica can be rated
through any other, and nothing a replica holds in memory is needed by the next request.

- **SQLite** (the default): ``feedback.sqlite3`` under ``settings.data_dir``, in WAL mode with
  ``synchronous=FULL``; each acknowledged write is its own committed transaction, so it survives a restart,
  a ``kill -9`` and a power cut. Replicas on one machine may share the file.
- **PostgreSQL** when ``ASSISTANT_DATABASE_URL`` is set (``postgresql+psycopg://user:pass@host/db``, psycopg 3);
  a write is answered only after its transaction has committed.

The schema is managed with Alembic; its migrations ship inside the package (``assistant/migrations``) and are
applied when the store opens. Alembic rather than a hand-written version table: it records the applied
revision, orders migrations, and runs a migration and its version bump in one transaction on PostgreSQL, which
is exactly the part a home-made table would have to get right. Two replicas starting at once do not race: the
upgrade runs under a PostgreSQL advisory lock (SQLite: an exclusive ``flock`` on a file beside the database),
so the second one waits and then finds the schema current. A database made before Alembic (a
``feedback.sqlite3`` with only the ``feedback`` table) is adopted as it is, its rows kept.

SQLAlchemy Core only: three tables, a few statements, no ORM needed.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, Field
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from assistant.errors import StoreError
from assistant.feedback import (
    MAX_STORED_TEXT_CHARS,
    FeedbackRecord,
    FeedbackStoreError,
    Vote,
    check_answer_id,
    check_vote,
    clean_comment,
)
from assistant.settings import Settings

log = logging.getLogger("assistant.store")

DB_NAME = "feedback.sqlite3"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
SCHEMA_HEAD = "0003"
"""The newest migration's revision (``tests/test_store.py`` checks it is Alembic's head). A database already at it
opens without Alembic, whose import and script scan were 0.1 s of every server start."""
MIGRATION_LOCK_KEY = 0x5A55_1571
"""Key of the PostgreSQL advisory lock held while the schema is upgraded (any constant shared by the replicas)."""

metadata = sa.MetaData()

answers = sa.Table(
    "answers",
    metadata,
    sa.Column("answer_id", sa.String(32), primary_key=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("reply", sa.JSON, nullable=True),
    sa.Column("earlier", sa.JSON, nullable=True),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("answer_id", sa.Text, primary_key=True),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("answer", sa.Text, nullable=False),
    sa.Column("vote", sa.Text, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Text, nullable=False),
)

question_log = sa.Table(
    "question_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("asked_at", sa.String(32), nullable=False),
    sa.Column("question", sa.Text, nullable=False),
    sa.Column("covered", sa.Boolean, nullable=False),
    sa.Column("sections", sa.JSON, nullable=False),
    sa.Column("triggers", sa.JSON, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
)


def now_iso() -> str:
    """The current time, UTC, ISO 8601 to the second (sorts as text)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


class IssuedAnswer(BaseModel):
    """An answer the service gave, kept so that feedback on it can be checked and stored with its text."""

    answer_id: str = Field(description="The answer's id, as returned to the client.")
    question: str = Field(description="The question, as asked.")
    answer: str = Field(description="The answer text (without disclaimer or notices).")
    created_at: str = Field(default_factory=now_iso, description="When it was given (UTC, ISO 8601).")
    reply: dict[str, Any] | None = Field(
        default=None, description="The whole reply as the API returned it (citations, notices), for briefs."
    )
    earlier: list[str] | None = Field(
        default=None, description="Ids of the answers before it in the same conversation, as the client sent them."
    )


class LoggedQuestion(BaseModel):
    """One line of the question log: what was asked (redacted) and how the service coped. No address, no id."""

    question: str = Field(description="The question with e-mail addresses, phone numbers and URLs replaced.")
    covered: bool = Field(description="True when answered from the corpus, False when declined as not covered.")
    sections: list[str] = Field(default_factory=list, description="Sections cited, as 'source title — section'.")
    triggers: list[str] = Field(default_factory=list, description="Ids of the lawyer notices that fired.")
    latency_ms: float = Field(description="Milliseconds from receiving the question to having its answer.")
    asked_at: str = Field(default_factory=now_iso, description="When it was asked (UTC, ISO 8601).")


class Store(Protocol):
    """What the service keeps between requests, shared by every replica."""

    backend: str
    """``sqlite`` or ``postgresql``."""

    def record_answer(self, issued: IssuedAnswer, logged: LoggedQuestion | None = None) -> None:
        """Keep an answer the service gave (and its question-log line), committed together."""

    def get_answer(self, answer_id: str) -> IssuedAnswer | None:
        """An issued answer by id, if the service gave it."""

    def get_answers(self, answer_ids: Sequence[str]) -> dict[str, IssuedAnswer]:
        """The issued answers among ``answer_ids``, by id."""

    def record_feedback(
        self, answer_id: str, question: str, answer: str, vote: Vote, comment: str | None = None
    ) -> FeedbackRecord:
        """Store a vote (and comment); returns the row only once it is committed."""

    def get_feedback(self, answer_id: str) -> FeedbackRecord | None:
        """The feedback stored for one answer, if any."""

    def count_feedback(self) -> int:
        """How many answers have feedback."""

    def questions(self, covered: bool | None = None, limit: int = 10_000) -> list[LoggedQuestion]:
        """The latest question-log lines, newest first; ``covered`` filters answered or declined ones."""

    def close(self) -> None:
        """Release connections (SQLite: checkpoint the WAL)."""


def database_url(settings: Settings) -> sa.URL:
    """``ASSISTANT_DATABASE_URL`` if set, else ``feedback.sqlite3`` in the data folder."""
    if settings.database_url is not None:
        try:
            return sa.make_url(settings.database_url.get_secret_value())
        except sa.exc.ArgumentError:
            raise StoreError(
                "ASSISTANT_DATABASE_URL is not a database URL; use e.g. postgresql+psycopg://user:pass@host/db."
            ) from None
    return sa.URL.create("sqlite", database=str(Path(settings.data_dir) / DB_NAME))


def open_store(settings: Settings) -> SqlStore:
    """The store the settings choose, its schema brought up to date."""
    return SqlStore(database_url(settings), timeout=settings.database_timeout)


def schema_version(connection: Connection) -> str | None:
    """The revision Alembic recorded in the database (None in a database it has not migrated)."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    connection.rollback()  # end the read's transaction: the migration, if any, runs in its own
    return str(versions[0]) if len(versions) == 1 else None


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


class SqlStore:
    """The :class:`Store` on SQLAlchemy: SQLite or PostgreSQL, safe to share between threads and processes."""

    def __init__(self, url: sa.URL, timeout: float = 10.0) -> None:
        self.url = url
        self.where = url.render_as_string(hide_password=True)
        self.backend = url.get_backend_name()
        if self.backend not in {"sqlite", "postgresql"}:
            raise StoreError(f"The database {self.where} is not supported; use SQLite or PostgreSQL.")
        try:
            self.engine = self._engine(timeout)
            self._migrate()
        except (OSError, SQLAlchemyError) as error:
            log.error("Cannot open the database at %s: %s", self.where, error)
            raise StoreError(
                f"Cannot open the database at {self.where}: {_reason(error)}. Check the setting and that the "
                "database is reachable, then start again."
            ) from None

    def _engine(self, timeout: float) -> Engine:
        if self.backend == "sqlite":
            path = Path(self.url.database or "")
            path.parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(self.url, connect_args={"timeout": timeout, "check_same_thread": False})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return sa.create_engine(self.url, pool_pre_ping=True, connect_args={"connect_timeout": max(1, round(timeout))})

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        """A connection held under the lock every replica takes to upgrade the schema.

        SQLite: the file lock is taken before the first connection, whose pragmas switch the file to WAL (a change
        that waits for no busy timeout, so replicas opening an empty database at once failed with "database is
        locked").
        """
        if self.backend == "postgresql":
            with self.engine.connect() as connection:
                connection.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                connection.commit()
                try:
                    yield connection
                finally:
                    connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                    connection.commit()
            return
        lock_path = Path(f"{self.url.database}.migrate.lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                with self.engine.connect() as connection:
                    yield connection
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _migrate(self) -> None:
        with self._migration_lock() as connection:
            if schema_version(connection) == SCHEMA_HEAD:
                return
            from alembic import command
            from alembic.config import Config

            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()

    def record_answer(self, issued: IssuedAnswer, logged: LoggedQuestion | None = None) -> None:
        """Keep an answer the service gave (and its question-log line), committed together."""
        check_answer_id(issued.answer_id)
        row = issued.model_dump()
        row["question"] = row["question"][:MAX_STORED_TEXT_CHARS]
        row["answer"] = row["answer"][:MAX_STORED_TEXT_CHARS]
        with self._writing("The answer could not be recorded"), self.engine.begin() as connection:
            connection.execute(sa.insert(answers), row)
            if logged is not None:
                entry = logged.model_dump()
                entry["question"] = entry["question"][:MAX_STORED_TEXT_CHARS]
                connection.execute(sa.insert(question_log), entry)

    def get_answer(self, answer_id: str) -> IssuedAnswer | None:
        """An issued answer by id, if the service gave it."""
        with self._reading(), self.engine.connect() as connection:
            row = connection.execute(sa.select(answers).where(answers.c.answer_id == answer_id)).mappings().first()
        return IssuedAnswer(**row) if row is not None else None

    def get_answers(self, answer_ids: Sequence[str]) -> dict[str, IssuedAnswer]:
        """The issued answers among ``answer_ids``, by id (ids the service never gave are left out)."""
        if not answer_ids:
            return {}
        with self._reading(), self.engine.connect() as connection:
            rows = connection.execute(sa.select(answers).where(answers.c.answer_id.in_(list(answer_ids)))).mappings()
            return {row["answer_id"]: IssuedAnswer(**row) for row in rows}

    def record_feedback(
        self, answer_id: str, question: str, answer: str, vote: Vote, comment: str | None = None
    ) -> FeedbackRecord:
        """Store a vote (and comment); returns the row only once it is committed."""
        check_answer_id(answer_id)
        check_vote(vote)
        comment = clean_comment(comment)
        now = now_iso()
        values = {
            "answer_id": answer_id,
            "question": question[:MAX_STORED_TEXT_CHARS],
            "answer": answer[:MAX_STORED_TEXT_CHARS],
            "vote": vote,
            "comment": comment,
            "created_at": now,
            "updated_at": now,
        }
        insert = self._dialect_insert()(feedback).values(values)
        upsert = insert.on_conflict_do_update(
            index_elements=[feedback.c.answer_id],
            set_={
                "vote": insert.excluded.vote,
                "comment": sa.func.coalesce(insert.excluded.comment, feedback.c.comment),
                "updated_at": insert.excluded.updated_at,
            },
        )
        with self._writing("Your feedback could not be saved", FeedbackStoreError), self.engine.begin() as connection:
            connection.execute(upsert)
            row = connection.execute(sa.select(feedback).where(feedback.c.answer_id == answer_id)).mappings().one()
        return FeedbackRecord(**row)

    def _dialect_insert(self) -> Any:
        if self.backend == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert

    def get_feedback(self, answer_id: str) -> FeedbackRecord | None:
        """The feedback stored for one answer, if any."""
        with self._reading(), self.engine.connect() as connection:
            row = connection.execute(sa.select(feedback).where(feedback.c.answer_id == answer_id)).mappings().first()
        return FeedbackRecord(**row) if row is not None else None

    def count_feedback(self) -> int:
        """How many answers have feedback."""
        with self._reading(), self.engine.connect() as connection:
            return int(connection.execute(sa.select(sa.func.count()).select_from(feedback)).scalar_one())

    def questions(self, covered: bool | None = None, limit: int = 10_000) -> list[LoggedQuestion]:
        """The latest question-log lines, newest first; ``covered`` filters answered or declined ones."""
        query = sa.select(question_log).order_by(question_log.c.id.desc()).limit(limit)
        if covered is not None:
            query = query.where(question_log.c.covered == covered)
        with self._reading(), self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [LoggedQuestion(**{key: value for key, value in row.items() if key != "id"}) for row in rows]

    @contextlib.contextmanager
    def _writing(self, what: str, error_class: type[StoreError] = StoreError) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as error:
            log.error("%s in %s: %s", what, self.where, error)
            raise error_class(f"{what} because the database is unavailable; please try again in a minute.") from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as error:
            log.error("Reading from %s failed: %s", self.where, error)
            raise StoreError("The database is unavailable right now; please try again in a minute.") from None

    def close(self) -> None:
        """Release connections; SQLite also checkpoints its WAL into the main file."""
        if self.backend == "sqlite":
            # If the checkpoint fails the WAL is still valid; SQLite replays it on the next open.
            with contextlib.suppress(SQLAlchemyError), self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.engine.dispose()


def _reason(error: BaseException) -> str:
    """The first line of a driver's error, without SQLAlchemy's background link."""
    original = getattr(error, "orig", None) or error
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
