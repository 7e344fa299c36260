"""Several worker processes on one port: both answer, none builds, none writes the live build."""

from __future__ import annotations

import hashlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from server_fixtures import ServerProcess, free_port, server_env

from assistant.assistant import Assistant
from assistant.index import live_build
from assistant.settings import Settings

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _build_files(settings: Settings) -> dict[str, str]:
    build = live_build(settings.index_dir)
    assert build is not None
    return {
        str(p.relative_to(build.path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(build.path.rglob("*"))
        if p.is_file()
    }


def test_two_workers_share_one_build_and_both_answer(settings: Settings, assistant: Assistant, tmp_path: Path) -> None:
    before = _build_files(settings)
    port = free_port()
    env = server_env(
        settings.index_dir,
        tmp_path / "data",
        port,
        ASSISTANT_WORKERS="2",
        ASSISTANT_TRUSTED_PROXIES='["127.0.0.1"]',
        ASSISTANT_RATE_LIMIT_PER_MINUTE="1000",
    )
    server = ServerProcess(port=port, env=env, log_path=tmp_path / "server.log").start()
    try:
        server.wait_ready()
        assert server.process is not None
        # Each worker loads the build on its own and says 503 "starting" until then (as one server does):
        # wait until health checks spread over both keep saying ready.
        deadline = time.monotonic() + 300
        streak = 0
        while streak < 20 and time.monotonic() < deadline:
            streak = streak + 1 if httpx.get(f"{server.url}/api/health", timeout=10).status_code == 200 else 0
            time.sleep(0.05)
        assert streak == 20, "the workers did not all become ready within 300 s"
        workers = _children(server.process.pid)
        assert len(workers) == 2, f"expected 2 worker processes, found {workers}"
        ticks = {pid: _cpu_ticks(pid) for pid in workers}

        questions = [
            "Does Spotify allow extracting stems from its songs?",
            "Is a remix a derivative work?",
            "Can I sell a track that samples a stem I separated?",
            "What does fair use protect in the US?",
        ]

        def ask(i: int) -> httpx.Response:
            return httpx.post(
                f"{server.url}/api/ask",
                json={"question": questions[i % len(questions)]},
                headers={"X-Forwarded-For": f"10.0.0.{i % 250}"},
                timeout=60,
            )

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(ask, range(64)))
        assert [r.status_code for r in responses] == [200] * 64
        disclaimer = assistant.corpus.disclaimer
        assert all(disclaimer in r.json()["rendered"] for r in responses)
        worked = {pid: _cpu_ticks(pid) - ticks[pid] for pid in workers}
        assert all(delta > 0 for delta in worked.values()), f"a worker answered nothing: {worked}"
        log = (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in log
    finally:
        server.stop(signal.SIGTERM)
    assert _build_files(settings) == before, "a worker wrote to the live build"
