"""``kill -9`` at the worst moment: halfway through ``assistant index``, and in the middle of requests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_fixtures import server_env

from assistant.integrity import check_live
from assistant.settings import Settings
from assistant.store import open_store

from .conftest import alive, copy_index, file_hashes, killpg

pytestmark = pytest.mark.slow

QUESTION = "Is a remix a derivative work?"


def test_killing_assistant_index_halfway_leaves_a_healthy_start(built: Path, tmp_path: Path, server_on: Any) -> None:
    index_dir = copy_index(built, tmp_path / "index")
    live = check_live(index_dir).build
    assert live is not None
    before = file_hashes(live.path)
    env = server_env(index_dir, tmp_path / "data", 7860)  # no server: the port is never bound
    process = subprocess.Popen(
        [sys.executable, "-m", "assistant.cli", "index", "--force"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    halfway = None
    while halfway is None:  # the new build's Chroma files are being written, its manifest is not there yet
        assert process.poll() is None, "the build finished before it could be killed"
        assert time.monotonic() < deadline, "the build never started writing"
        halfway = next(
            (
                p
                for p in (index_dir / "builds").iterdir()
                if p != live.path and (p / "chroma.sqlite3").exists() and not (p / "manifest.json").exists()
            ),
            None,
        )
        time.sleep(0.05)
    killpg(process)
    assert not (halfway / "manifest.json").exists()

    verdict = check_live(index_dir)
    assert verdict.problem is None and verdict.build is not None
    assert verdict.build.path == live.path and file_hashes(live.path) == before  # the live build untouched
    server = server_on(index_dir)
    health = httpx.get(f"{server.url}/api/health", timeout=30).json()
    assert health["status"] == "ok" and health["index"]["build"] == live.path.name
    answer = httpx.post(f"{server.url}/api/ask", json={"question": QUESTION}, timeout=60)
    assert answer.status_code == 200 and answer.headers["X-Index-Build"] == live.path.name


def test_killing_the_server_mid_request_keeps_acknowledged_feedback(
    built: Path, tmp_path: Path, server_on: Any
) -> None:
    index_dir = copy_index(built, tmp_path / "index")
    server = server_on(index_dir, "first")

    def answer_id() -> str:
        given = httpx.post(f"{server.url}/api/ask", json={"question": QUESTION}, timeout=60)
        assert given.status_code == 200
        return str(given.json()["answer_id"])

    kept_id = answer_id()
    vote = {"answer_id": kept_id, "vote": "down", "comment": "kept across a kill"}
    acknowledged = httpx.post(f"{server.url}/api/feedback", json=vote, timeout=30)
    assert acknowledged.status_code == 200 and acknowledged.json()["saved"] is True

    # Until the kill, six clients ask without pause and two re-vote without pause, each on an answer of its own,
    # numbering their comments. The server is killed once it has answered and saved a good many of them, so
    # requests of both kinds are in flight when it dies.
    revoted = [answer_id() for _ in range(2)]
    last_saved = dict.fromkeys(revoted, -1)
    outcomes: list[str] = []
    answered = threading.Semaphore(0)

    def ask() -> None:
        while True:
            try:
                given = httpx.post(f"{server.url}/api/ask", json={"question": QUESTION}, timeout=30)
            except httpx.ConnectError:
                outcomes.append("refused")  # asked after the server died
                return
            except httpx.HTTPError:
                outcomes.append("cut off")
                return
            if given.status_code != 200:
                outcomes.append(f"status {given.status_code}")
                return
            answered.release()

    def revote(answer: str) -> None:
        for n in range(1_000_000):
            try:
                saved = httpx.post(
                    f"{server.url}/api/feedback",
                    json={"answer_id": answer, "vote": "up" if n % 2 else "down", "comment": f"vote {n}"},
                    timeout=30,
                )
            except httpx.HTTPError:
                return
            if saved.status_code != 200 or saved.json()["saved"] is not True:
                outcomes.append(f"vote status {saved.status_code}")
                return
            last_saved[answer] = n
            answered.release()

    threads = [threading.Thread(target=ask) for _ in range(6)] + [
        threading.Thread(target=revote, args=(a,)) for a in revoted
    ]
    for thread in threads:
        thread.start()
    for _ in range(40):
        assert answered.acquire(timeout=60), "the server stopped answering before it was killed"
    assert server.process is not None
    killpg(server.process)
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads) and not alive(server)
    assert set(outcomes) <= {"cut off", "refused"}, outcomes  # every request before the kill was served
    assert "cut off" in outcomes, outcomes  # at least one question was in flight when the server died
    assert min(last_saved.values()) >= 0, last_saved

    restarted = server_on(index_dir, "second")  # the same data folder
    health = httpx.get(f"{restarted.url}/api/health", timeout=30).json()
    assert health["status"] == "ok" and health["feedback"]["answers_rated"] >= 1
    assert check_live(index_dir).problem is None
    store = open_store(Settings(_env_file=None, index_dir=index_dir, data_dir=tmp_path / "data"))  # type: ignore[call-arg]
    try:
        kept = store.get_feedback(kept_id)
        latest = {a: store.get_feedback(a) for a in revoted}
    finally:
        store.close()
    assert kept is not None and (kept.vote, kept.comment) == ("down", "kept across a kill")
    for answer, record in latest.items():  # the last acknowledged vote, or one sent after it and cut off
        assert record is not None and record.comment is not None, answer
        assert int(record.comment.removeprefix("vote ")) >= last_saved[answer], (record.comment, last_saved)
    again = httpx.post(f"{restarted.url}/api/feedback", json={**vote, "vote": "up"}, timeout=30)
    assert again.status_code == 200  # the answer given before the kill is still known
    answer = httpx.post(f"{restarted.url}/api/ask", json={"question": QUESTION}, timeout=60)
    assert answer.status_code == 200 and answer.json()["disclaimer"]
