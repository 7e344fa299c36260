"""Clients that drop their connection mid-answer, against a real server process (real assistant, real index).

Chat clients join Gradio's queue, read the event stream until the answer's first piece has arrived and close
the connection; API clients send ``POST /api/ask`` over a raw socket and reset it before the answer. After
each storm the server is healthy and answers the chat and the API in full, every answer it kept in its store
carries the disclaimer verbatim, and what a chat shows after a dropped turn never holds a reply without it.
"""

from __future__ import annotations

import functools
import json
import random
import signal
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from gradio_client.utils import apply_diff
from server_fixtures import PROJECT_ROOT, ServerProcess, free_port, server_env

from assistant.assistant import Assistant
from assistant.corpus import Corpus
from assistant.schemas import Answer
from assistant.settings import Settings
from assistant.store import DB_NAME, answers, question_log
from assistant.ui import escape_text, message_text

pytestmark = pytest.mark.slow

STREAM_DELAY = "0.05"
"""Seconds between the chat's streamed pieces: the answer takes about 0.6 s to stream, so a drop lands inside it."""
CLIENTS = 24
"""Clients in each storm: six times the answer slots (concurrency_limit 4), so some also drop while queued."""


def held_out_questions() -> list[str]:
    """Questions no other test asks (the held-out eval sets), so each storm's rows in the store are its own."""
    found = []
    for name in ("heldout.jsonl", "heldout2.jsonl"):
        for line in (PROJECT_ROOT / "evals" / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(json.loads(line)["question"])
    return list(dict.fromkeys(found))


QUESTIONS = held_out_questions()


@pytest.fixture(scope="module")
def server(
    settings: Settings, assistant: Assistant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``python app.py`` on a free loopback port with the session's index (built by the ``assistant`` fixture)."""
    tmp = tmp_path_factory.mktemp("disconnects")
    port = free_port()
    env = server_env(
        settings.index_dir,
        tmp / "data",
        port,
        ASSISTANT_RATE_LIMIT_PER_MINUTE="100000",  # every client here speaks from 127.0.0.1
        ASSISTANT_STREAM_DELAY=STREAM_DELAY,
    )
    process = ServerProcess(port=port, env=env, log_path=tmp / "server.log").start()
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop(signal.SIGTERM)


def data_dir(server: ServerProcess) -> Path:
    return Path(server.env["ASSISTANT_DATA_DIR"])


@functools.cache
def chat_fn_index(url: str) -> int:
    config = httpx.get(f"{url}/config", timeout=30).json()
    return next(int(d.get("id", i)) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "chat")


def chat_turn(server: ServerProcess, question: str, session: str, drop_after: int | None = None) -> dict[str, Any]:
    """One chat turn as the page sends it; ``drop_after``: close the event stream after that many updates.

    Returns the updates seen, whether the turn completed, and the chat's messages as last known.
    """
    fn_index = chat_fn_index(server.url)
    values: list[Any] | None = None
    updates = 0
    with httpx.Client(base_url=server.url, timeout=120) as client:
        joined = client.post(
            "/gradio_api/queue/join",
            json={"data": [question, None], "fn_index": fn_index, "session_hash": session, "event_data": None},
        )
        assert joined.status_code == 200, joined.text
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            assert stream.status_code == 200
            for line in stream.iter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                kind = message.get("msg")
                if kind not in {"process_generating", "process_completed"}:
                    continue
                data = (message.get("output") or {}).get("data")
                if kind == "process_completed":
                    assert message.get("success"), message
                    return {"updates": updates, "completed": True, "messages": data[0]}
                updates += 1
                # The first update carries whole values; the later ones, diffs against them.
                values = (
                    data if values is None else [apply_diff(old, new) for old, new in zip(values, data, strict=True)]
                )
                if drop_after is not None and updates >= drop_after:
                    break  # leaving the block closes the connection with the stream unread
    return {"updates": updates, "completed": False, "messages": values[0] if values else []}


def drop_api_request(server: ServerProcess, question: str, wait: float) -> bool:
    """``POST /api/ask`` over a raw socket, reset after ``wait`` s; True if no byte of the response had arrived."""
    body = json.dumps({"question": question, "history": []}).encode()
    head = (
        f"POST /api/ask HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        time.sleep(wait)
        sock.setblocking(False)
        try:
            answered = bool(sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            answered = False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    return not answered


def stored(server: ServerProcess) -> tuple[list[Any], int]:
    """Every issued answer the store kept (question, reply) and the number of question-log lines."""
    engine = sa.create_engine(f"sqlite:///{data_dir(server) / DB_NAME}")
    try:
        with engine.connect() as connection:
            rows = list(connection.execute(sa.select(answers.c.question, answers.c.reply)))
            logged = connection.execute(sa.select(sa.func.count()).select_from(question_log)).scalar_one()
    finally:
        engine.dispose()
    return rows, int(logged)


def assert_stored_replies_carry_the_disclaimer(server: ServerProcess, corpus: Corpus) -> list[Any]:
    rows, logged = stored(server)
    for question, reply in rows:
        answer = Answer.model_validate(reply)
        assert answer.disclaimer == corpus.disclaimer, question
        assert answer.rendered.rstrip().endswith(corpus.disclaimer), question
    assert logged == len(rows), "each issued answer and its question-log line are committed together"
    return rows


def assert_still_answering(server: ServerProcess, corpus: Corpus, questions: list[str]) -> None:
    """Health says ready, and several chat turns and API questions at once are answered in full."""
    health = httpx.get(f"{server.url}/api/health", timeout=30)
    assert health.status_code == 200 and health.json()["ready"] is True, health.text

    def ask(question: str) -> httpx.Response:
        return httpx.post(f"{server.url}/api/ask", json={"question": question}, timeout=120)

    with ThreadPoolExecutor(max_workers=8) as pool:
        chats = list(pool.map(lambda q: chat_turn(server, q, uuid.uuid4().hex), questions[:4]))
        asked = list(pool.map(ask, questions[4:8]))
    for turn in chats:
        assert turn["completed"]
        assert escape_text(corpus.disclaimer) in message_text(turn["messages"][-1])
    for response in asked:
        assert response.status_code == 200, response.text
        assert corpus.disclaimer in response.json()["rendered"]
    log = server.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log and "Exception in ASGI application" not in log


def test_chat_clients_dropping_mid_stream_leave_the_server_answering(server: ServerProcess, corpus: Corpus) -> None:
    dropped = QUESTIONS[:CLIENTS]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        turns = list(pool.map(lambda q: chat_turn(server, q, uuid.uuid4().hex, drop_after=2), dropped))
    # Each client saw the question and the answer's first piece, then left before the answer was whole.
    assert all(turn["updates"] == 2 and not turn["completed"] for turn in turns)

    assert_still_answering(server, corpus, QUESTIONS[CLIENTS : CLIENTS + 8])
    # An answer is kept before it is streamed, so each dropped turn's answer is in the store, whole.
    kept = {question for question, _ in assert_stored_replies_carry_the_disclaimer(server, corpus)}
    assert set(dropped) <= kept


def test_a_chat_that_dropped_mid_answer_shows_every_reply_with_the_disclaimer_when_it_comes_back(
    server: ServerProcess, corpus: Corpus
) -> None:
    session = uuid.uuid4().hex
    first, cut, again = QUESTIONS[40:43]
    assert chat_turn(server, first, session)["completed"]
    assert chat_turn(server, cut, session, drop_after=2)["updates"] == 2
    # The page reconnects with the same session and asks again. The cut turn may be shown or not, but never
    # half-finished: after each question shown comes one whole reply that ends with the disclaimer.
    shown = chat_turn(server, again, session)
    assert shown["completed"]
    disclaimer = escape_text(corpus.disclaimer)
    groups: list[list[str]] = []
    for message in shown["messages"]:
        if message["role"] == "user":
            groups.append([message_text(message)])
        else:
            groups[-1].append(message_text(message))
    assert [group[0] for group in groups] in (
        [escape_text(first), escape_text(again)],
        [escape_text(first), escape_text(cut), escape_text(again)],
    )
    for group in groups:
        replies = group[1:]
        assert len(replies) >= 2 and disclaimer in replies[-1], group
        assert sum(disclaimer in reply for reply in replies) == 1, group


def test_api_clients_dropping_mid_request_leave_the_server_answering(server: ServerProcess, corpus: Corpus) -> None:
    rng = random.Random(3)
    dropped = QUESTIONS[50 : 50 + CLIENTS]
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        before_answer = list(pool.map(lambda q: drop_api_request(server, q, rng.uniform(0, 0.005)), dropped))
    assert sum(before_answer) >= CLIENTS // 2, f"most requests must be dropped before their answer: {before_answer}"

    assert_still_answering(server, corpus, QUESTIONS[80:88])
    # Whatever the server kept of the dropped requests is a whole answer with the disclaimer.
    rows = assert_stored_replies_carry_the_disclaimer(server, corpus)
    assert len(rows) == len({question for question, _ in rows})
