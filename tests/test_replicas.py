"""Two real server processes sharing one PostgreSQL and one Redis behave as one service.

Each replica is ``python app.py`` with its own data folder and port; only ``ASSISTANT_DATABASE_URL`` and
``ASSISTANT_REDIS_URL`` join them. Clients are told apart by ``X-Forwarded-For`` (the replicas trust loopback
as their proxy), so each test speaks from addresses of its own.
"""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from server_fixtures import ServerProcess, free_port, server_env
from store_fixtures import Postgres, Redis, postgres, redis_server

from assistant.corpus import Corpus

__all__ = ["postgres", "redis_server"]

pytestmark = [pytest.mark.slow]

RATE_LIMIT = 20
QUESTIONS = [
    "Does Spotify allow stem extraction?",
    "Is it legal to extract stems from a song I don't own?",
    "What does the article say about YouTube Content ID?",
    "When should I talk to a lawyer?",
]
_addresses = (f"198.18.{n // 250}.{n % 250 + 1}" for n in itertools.count())


@dataclass
class Replicas:
    first: ServerProcess
    second: ServerProcess
    database_url: str

    def rows(self, query: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(sa.text(query), params))
        finally:
            engine.dispose()


@pytest.fixture(scope="module")
def replicas(
    settings: Any, postgres: Postgres, redis_server: Redis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    """Two replicas of the server on the session's index, one database, one Redis."""
    tmp = tmp_path_factory.mktemp("replicas")
    database_url = postgres.new_database()
    servers = []
    try:
        for name in ("first", "second"):
            port = free_port()
            env = server_env(
                settings.index_dir,
                tmp / name / "data",
                port,
                ASSISTANT_DATABASE_URL=database_url,
                ASSISTANT_REDIS_URL=redis_server.url,
                # Sharing is under test here, not the time-out: a busy CI machine must not push a check past it.
                ASSISTANT_REDIS_TIMEOUT="2",
                ASSISTANT_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT),
                ASSISTANT_TRUSTED_PROXIES='["127.0.0.1"]',
            )
            (tmp / name).mkdir()
            server = ServerProcess(port=port, env=env, log_path=tmp / name / "server.log").start()
            servers.append(server)
            server.wait_ready()  # one at a time: the first builds the index if the session has none yet
        yield Replicas(first=servers[0], second=servers[1], database_url=database_url)
    finally:
        for server in servers:
            server.stop(signal.SIGKILL)


def client(server: ServerProcess, address: str | None = None) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"x-forwarded-for": address or next(_addresses)}, timeout=60)


def ask(server: ServerProcess, question: str) -> dict[str, Any]:
    with client(server) as http:
        response = http.post("/api/ask", json={"question": question})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_both_replicas_use_the_shared_database(replicas: Replicas) -> None:
    for server in (replicas.first, replicas.second):
        with client(server) as http:
            assert http.get("/api/health").json()["store"] == "postgresql"


def test_feedback_for_an_answer_from_one_replica_is_accepted_by_the_other(replicas: Replicas, corpus: Corpus) -> None:
    answer = ask(replicas.first, QUESTIONS[0])
    with client(replicas.second) as second:
        saved = second.post(
            "/api/feedback", json={"answer_id": answer["answer_id"], "vote": "down", "comment": "Cite it"}
        )
        assert saved.status_code == 200, saved.text
        assert (saved.json()["vote"], saved.json()["comment"]) == ("down", "Cite it")
        rated = second.get("/api/health").json()["feedback"]["answers_rated"]
    # Read back through the other replica: a new vote keeps the comment stored through the second one.
    with client(replicas.first) as first:
        again = first.post("/api/feedback", json={"answer_id": answer["answer_id"], "vote": "up"})
        assert again.status_code == 200 and (again.json()["vote"], again.json()["comment"]) == ("up", "Cite it")
    (row,) = replicas.rows(
        "SELECT question, answer, vote, comment FROM feedback WHERE answer_id = :id", id=answer["answer_id"]
    )
    assert tuple(row) == (QUESTIONS[0], answer["answer"], "up", "Cite it")
    assert rated == replicas.rows("SELECT COUNT(*) FROM feedback")[0][0]
    with client(replicas.second) as second:
        unknown = second.post(
            "/api/feedback", json={"answer_id": "e" * 32, "vote": "up", "question": "q", "answer": "a"}
        )
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_answer"
    assert "never gave an answer with this id" in unknown.json()["message"]
    assert unknown.json()["disclaimer"] == corpus.disclaimer


def test_a_rate_limit_reached_on_one_replica_holds_on_the_other(replicas: Replicas, corpus: Corpus) -> None:
    address = next(_addresses)
    with client(replicas.first, address) as first, client(replicas.second, address) as second:
        statuses = [first.post("/api/ask", json={"question": ""}).status_code for _ in range(RATE_LIMIT)]
        assert 429 not in statuses
        assert first.post("/api/ask", json={"question": ""}).status_code == 429
        limited = second.post("/api/ask", json={"question": "Is sampling legal?"})
        assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
        assert f"{RATE_LIMIT} per minute" in limited.json()["message"]
        assert limited.json()["disclaimer"] == corpus.disclaimer
        assert 1 <= int(limited.headers["retry-after"]) <= 60
    with client(replicas.second) as other:
        assert other.post("/api/ask", json={"question": ""}).status_code == 400  # another client is unaffected


def test_kill_9_of_a_replica_loses_no_acknowledged_feedback(replicas: Replicas) -> None:
    """Clients vote on both replicas; one is killed mid-way. Every vote answered 200 is in PostgreSQL."""
    answers = [
        ask(server, QUESTIONS[n % len(QUESTIONS)]) for n, server in enumerate([replicas.first, replicas.second] * 30)
    ]
    acknowledged: dict[str, tuple[str, str]] = {}
    failed: list[str] = []
    lock = threading.Lock()
    killed = threading.Event()
    sent = itertools.count()

    def vote(answer_id: str, n: int) -> None:
        target = replicas.second if n % 2 else replicas.first
        body = {"answer_id": answer_id, "vote": "up" if n % 3 else "down", "comment": f"vote {n}"}
        try:
            with client(target) as http:
                response = http.post("/api/feedback", json=body, timeout=10)
        except httpx.HTTPError as error:
            with lock:
                failed.append(type(error).__name__)
            return
        with lock:
            if response.status_code == 200:
                acknowledged[answer_id] = (body["vote"], body["comment"])
            else:
                failed.append(str(response.status_code))

    def worker(share: list[dict[str, Any]]) -> None:
        for answer in share:
            n = next(sent)
            if n == 20:
                killed.set()
            vote(answer["answer_id"], n)

    threads = [threading.Thread(target=worker, args=(answers[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    assert killed.wait(timeout=120)
    replicas.second.stop(signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)

    assert len(acknowledged) >= 20 and failed, (len(acknowledged), failed)  # votes landed, and the kill was felt
    stored = {
        row[0]: (row[1], row[2])
        for row in replicas.rows("SELECT answer_id, vote, comment FROM feedback WHERE comment LIKE 'vote %'")
    }
    missing = {answer_id for answer_id in acknowledged if stored.get(answer_id) != acknowledged[answer_id]}
    assert not missing, f"acknowledged but not stored: {missing}"
    after = ask(replicas.first, QUESTIONS[1])  # the other replica keeps answering
    assert after["answered"] is True
    with client(replicas.first) as first:
        assert first.post("/api/feedback", json={"answer_id": answers[1]["answer_id"], "vote": "up"}).status_code == 200


def test_a_replica_whose_redis_is_unreachable_still_limits_and_answers_json(
    settings: Any, postgres: Postgres, tmp_path: Path, corpus: Corpus
) -> None:
    """Nothing listens at the Redis URL: the server counts in-process, answers 429 as JSON, logs one line."""
    port = free_port()
    env = server_env(
        settings.index_dir,
        tmp_path / "data",
        port,
        ASSISTANT_DATABASE_URL=postgres.new_database(),
        ASSISTANT_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        ASSISTANT_RATE_LIMIT_PER_MINUTE="3",
    )
    server = ServerProcess(port=port, env=env, log_path=tmp_path / "server.log").start()
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            answered = http.post("/api/ask", json={"question": QUESTIONS[0]})
            responses = [http.post("/api/ask", json={"question": ""}) for _ in range(3)]
            assert http.get("/api/health").status_code == 200
    finally:
        server.stop()
    assert answered.status_code == 200 and answered.json()["answered"] is True
    assert [response.status_code for response in responses] == [400, 400, 429]
    limited = responses[-1]
    assert limited.headers["content-type"].startswith("application/json")
    assert limited.json()["error"] == "rate_limited" and limited.json()["disclaimer"] == corpus.disclaimer
    log = (tmp_path / "server.log").read_text()
    assert log.count("Redis unreachable") == 1
