"""Answer processes (ASSISTANT_WORKERS): both answer, the chat keeps working, a lost one is replaced."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_fixtures import ServerProcess, free_port, server_env

from assistant.assistant import Assistant
from assistant.index import live_build
from assistant.settings import Settings

pytestmark = pytest.mark.slow

QUESTIONS = [
    "Does Spotify allow extracting stems from its songs?",
    "Is a remix a derivative work?",
    "Can I sell a track that samples a stem I separated?",
    "What does fair use protect in the US?",
]


def answer_processes(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def build_files(settings: Settings) -> dict[str, str]:
    build = live_build(settings.index_dir)
    assert build is not None
    return {
        str(p.relative_to(build.path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(build.path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def pooled(
    settings: Settings, assistant: Assistant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server with two answer processes, on the session's index."""
    tmp = tmp_path_factory.mktemp("workers")
    port = free_port()
    env = server_env(
        settings.index_dir,
        tmp / "data",
        port,
        ASSISTANT_WORKERS="2",
        ASSISTANT_TRUSTED_PROXIES='["127.0.0.1"]',
        ASSISTANT_RATE_LIMIT_PER_MINUTE="1000",
    )
    before = build_files(settings)
    server = ServerProcess(port=port, env=env, log_path=tmp / "server.log").start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop(signal.SIGTERM)
    assert build_files(settings) == before, "an answer process wrote to the live build"


def ask(server: ServerProcess, i: int, history: list[dict[str, object]] | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/ask",
        json={"question": QUESTIONS[i % len(QUESTIONS)], "history": history or []},
        headers={"X-Forwarded-For": f"10.0.0.{i % 250}"},
        timeout=120,
    )


def test_both_answer_processes_answer(pooled: ServerProcess, assistant: Assistant) -> None:
    assert pooled.process is not None
    workers = answer_processes(pooled.process.pid)
    assert len(workers) == 2, f"expected 2 answer processes, found {workers}"
    ticks = {pid: cpu_ticks(pid) for pid in workers}
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: ask(pooled, i), range(64)))
    assert [r.status_code for r in responses] == [200] * 64
    assert all(assistant.corpus.disclaimer in r.json()["rendered"] for r in responses)
    worked = {pid: cpu_ticks(pid) - ticks[pid] for pid in workers}
    assert all(delta > 0 for delta in worked.values()), f"an answer process answered nothing: {worked}"
    log = pooled.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log


def test_a_follow_up_and_a_chat_session_work_across_connections(pooled: ServerProcess) -> None:
    first = ask(pooled, 0).json()
    history = [
        {"role": "user", "content": QUESTIONS[0]},
        {"role": "assistant", "content": first["answer"], "answer_id": first["answer_id"]},
    ]
    follow = httpx.post(f"{pooled.url}/api/ask", json={"question": "And YouTube?", "history": history}, timeout=120)
    assert follow.status_code == 200, follow.text
    assert follow.json()["answer_id"] != first["answer_id"]
    # The chat page joins Gradio's queue on one connection and reads its event stream on another.
    config = httpx.get(f"{pooled.url}/config", timeout=30).json()
    fn_index = next(d.get("id", i) for i, d in enumerate(config["dependencies"]) if d.get("api_name") == "chat")
    session = uuid.uuid4().hex
    with (
        httpx.Client(base_url=pooled.url, timeout=120) as joiner,
        httpx.Client(base_url=pooled.url, timeout=120) as reader,
    ):
        joined = joiner.post(
            "/gradio_api/queue/join",
            json={"data": [QUESTIONS[1], None], "fn_index": fn_index, "session_hash": session, "event_data": None},
        )
        assert joined.status_code == 200, joined.text
        completed = None
        with reader.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                    completed = json.loads(line[5:])
                    break
    assert completed is not None and completed.get("success"), completed


def test_a_killed_answer_process_is_replaced(pooled: ServerProcess, assistant: Assistant) -> None:
    assert pooled.process is not None
    victim = answer_processes(pooled.process.pid)[0]
    os.kill(victim, signal.SIGKILL)
    statuses = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not statuses or statuses[-1] != 200 or len(statuses) < 6):
        response = ask(pooled, len(statuses))
        statuses.append(response.status_code)
        if response.status_code != 200:
            body = response.json()
            assert response.status_code == 503 and "ask again" in body["message"], body
            assert assistant.corpus.disclaimer in json.dumps(body), body
    assert statuses[-1] == 200 and statuses.count(503) <= 2, statuses
    assert len(answer_processes(pooled.process.pid)) == 2
    assert victim not in answer_processes(pooled.process.pid)
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert {r.status_code for r in pool.map(lambda i: ask(pooled, i), range(8))} == {200}
