"""The answer pool: it answers once its first process has opened the build, and `assistant serve --workers N`
starts that process before the server is built."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_fixtures import ServerProcess, free_port, server_env
from test_workers import answer_processes

from assistant import pool as pool_module
from assistant.assistant import Assistant
from assistant.index_server import IndexServerUnavailableError
from assistant.pool import AnswerPool
from assistant.settings import Settings

pytestmark = pytest.mark.slow

QUESTION = "Does Spotify allow extracting stems from its songs?"


def wait_open(pool: AnswerPool, processes: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while pool.open_processes < processes:
        assert time.monotonic() < deadline, f"only {pool.open_processes} of {processes} answer processes opened"
        time.sleep(0.1)


@pytest.fixture
def pool(settings: Settings, assistant: Assistant) -> Iterator[AnswerPool]:
    """Two answer processes on the session's index (built by ``assistant`` first)."""
    answerer = AnswerPool(settings, 2)
    try:
        yield answerer
    finally:
        answerer.close()


def test_the_pool_answers_once_its_first_process_has_opened(pool: AnswerPool, assistant: Assistant) -> None:
    assert pool.open_processes >= 1
    answer = pool.ask(QUESTION)
    assert answer.answer == assistant.ask(QUESTION).answer
    assert answer.disclaimer == assistant.corpus.disclaimer
    wait_open(pool, 2)


def test_new_conversations_go_only_to_processes_that_have_opened(pool: AnswerPool) -> None:
    wait_open(pool, 2)
    with pool._lock:
        pool._open[0] = False  # as while process 1 is replaced and its successor opens the build
    try:
        routed = [pool._route([]) for _ in range(3)]
        assert routed == [1, 1, 1]
    finally:
        with pool._lock:
            pool._open[0] = True
            pool._busy[1] -= 3
    # Once both are open again, the least busy one gets the next new conversation.
    with pool._lock:
        pool._busy[1] += 1
    try:
        assert pool._route([]) == 0
    finally:
        with pool._lock:
            pool._busy[1] -= 1
            pool._busy[0] -= 1


def test_a_pool_takes_over_the_process_started_early(settings: Settings, assistant: Assistant) -> None:
    pool_module.start_early(settings)
    assert pool_module._early is not None
    early = pool_module._early[1]
    answerer = AnswerPool(settings, 2)
    try:
        assert answerer._executors[0] is early and pool_module._early is None
        assert answerer.ask(QUESTION).disclaimer == assistant.corpus.disclaimer
    finally:
        answerer.close()


def test_a_process_started_early_for_other_settings_is_stopped(settings: Settings, assistant: Assistant) -> None:
    other = settings.model_copy(update={"rate_limit_per_minute": settings.rate_limit_per_minute + 1})
    pool_module.start_early(other)
    assert pool_module._early is not None
    early = pool_module._early[1]
    answerer = AnswerPool(settings, 2)
    try:
        assert answerer._executors[0] is not early
        with pytest.raises(RuntimeError, match="shutdown"):
            early.submit(print)
    finally:
        answerer.close()
    pool_module.discard_early()  # nothing left to stop: a second discard is harmless
    assert pool_module._early is None


def test_a_process_that_cannot_open_the_build_says_why(settings: Settings, tmp_path: Path) -> None:
    """The answer process's own error reaches the server whole, not only that a process stopped."""
    unreachable = settings.model_copy(
        update={"chroma_url": "http://127.0.0.1:9", "index_dir": tmp_path / "index", "data_dir": tmp_path / "data"}
    )
    with pytest.raises(IndexServerUnavailableError, match="cannot be reached"):
        AnswerPool(unreachable, 1)


def test_assistant_serve_with_two_workers_answers_with_two_processes(
    settings: Settings, assistant: Assistant, tmp_path: Path
) -> None:
    with answering_server(settings, assistant.corpus.disclaimer, tmp_path, "--workers", "2") as (server, _):
        assert server.process is not None
        deadline = time.monotonic() + 120
        log = ""
        while "Answer process 2 is answering" not in log:  # the second opens once the first has
            assert time.monotonic() < deadline, log
            time.sleep(0.2)
            log = server.log_path.read_text(encoding="utf-8", errors="replace")
        assert "Answer process 1 was started before the server" in log
        assert "Traceback" not in log and "ERROR" not in log
        assert len(answer_processes(server.process.pid)) == 2  # the early one was taken over, not doubled


def test_a_server_whose_port_is_taken_stops_cleanly_with_its_answer_processes(
    settings: Settings, assistant: Assistant, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("port-taken")
    marker = f"pool-test-{time.monotonic_ns()}"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**server_env(settings.index_dir, tmp / "data", port), "POOL_TEST_MARKER": marker}
        stopped = subprocess.run(
            [sys.executable, "-m", "assistant.cli", "serve", "--workers", "2", "--port", str(port)],
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=120,
        )
    output = stopped.stdout + stopped.stderr
    assert stopped.returncode != 0 and "address already in use" in output
    assert "Traceback" not in output, output
    deadline = time.monotonic() + 30
    while left := processes_with(marker):  # an answer process still opening ends once it has
        assert time.monotonic() < deadline, f"answer processes left behind: {left}"
        time.sleep(0.2)


def processes_with(marker: str) -> list[int]:
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() in environ.read_bytes():
                found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


@contextlib.contextmanager
def answering_server(
    settings: Settings, disclaimer: str, tmp: Path, *options: str
) -> Iterator[tuple[ServerProcess, str]]:
    """A server started with ``assistant serve`` and ``options`` (``python app.py`` without), once it has answered
    :data:`QUESTION` with ``disclaimer``; yields it and that answer's text, and stops it (with whatever is left of
    its process group) after."""
    port = free_port()
    env = server_env(settings.index_dir, tmp / "data", port)
    serve = [sys.executable, "-m", "assistant.cli", "serve", *options, "--port", str(port)]
    started = ServerProcess(port=port, env=env, log_path=tmp / "server.log", **({"command": serve} if options else {}))
    server = started.start()
    try:
        server.wait_ready()
        response = httpx.post(f"{server.url}/api/ask", json={"question": QUESTION, "history": []}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.json()["disclaimer"] == disclaimer
        yield server, response.json()["answer"]
    finally:
        server.stop(signal.SIGTERM)
        if server.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, signal.SIGKILL)  # an answer process the server left behind


def test_the_server_answers_in_one_process_of_its_own_that_ends_with_it(
    settings: Settings, assistant: Assistant, tmp_path: Path
) -> None:
    """The default (one worker), started as ``python app.py``: the answer process starts before the server is
    built, and a server killed outright (no chance to stop it) does not leave it behind."""
    with answering_server(settings, assistant.corpus.disclaimer, tmp_path) as (server, _):
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
        assert "Answer process 1 was started before the server" in log
        assert "1 answer process(es)" in log and "Traceback" not in log
        assert server.process is not None
        answering = answer_processes(server.process.pid)
        assert len(answering) == 1
        server.process.kill()  # the server alone, SIGKILL: nothing of it runs to stop the answer process
        server.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive := [pid for pid in answering if Path(f"/proc/{pid}").exists() and not zombie(pid)]:
            assert time.monotonic() < deadline, f"answer process left behind the killed server: {alive}"
            time.sleep(0.2)


def test_assistant_serve_with_no_workers_answers_in_its_own_process(
    settings: Settings, assistant: Assistant, tmp_path: Path
) -> None:
    with answering_server(settings, assistant.corpus.disclaimer, tmp_path, "--workers", "0") as (server, answer):
        assert answer == assistant.ask(QUESTION).answer
        log = server.log_path.read_text(encoding="utf-8", errors="replace")
        assert "answers computed in the server's process" in log and "Answer process" not in log
        assert server.process is not None and answer_processes(server.process.pid) == []


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
