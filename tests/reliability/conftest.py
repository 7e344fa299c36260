"""Fixtures of the reliability tests: private copies of the session's index, and real servers on them.

Every test here damages, kills or rebuilds something, so none touches the session's own index: each works on a
copy of its live build (with the fitted decisions) and of its model folder (the exported graph and the vector
cache, so that a rebuild embeds nothing anew).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from server_fixtures import ServerProcess, free_port, server_env

from assistant.index import live_build

if TYPE_CHECKING:
    from assistant.assistant import Assistant
    from assistant.settings import Settings

SELFCHECK_INTERVAL = "5"
"""Seconds between self-checks in these servers (60 in production): damage that changes no file's time is
noticed within this (a check hashes about 40 MB: half a second on a busy two-core machine)."""
HEAL_RETRY = "2"
REBUILT_WITHIN = 900.0
"""Seconds a damaged index may take to be rebuilt and loaded: a rebuild is 20-40 s on two cores with the vector
cache, a refit of the decisions (when they cannot be carried over) 90 s more when the machine is idle and several
minutes when it is not; the rest is headroom for a
machine shared with other work."""
LEAKS = ("Traceback", "Errno", "data_level0", "chroma.sqlite3", "records.npz", "manifest.json", "/tmp/", "/work/")
"""What must never reach a client: exception text, file names, paths."""


def copy_index(source: Path, target: Path) -> Path:
    """A copy of the live build of ``source`` and its model folder, live under ``target``."""
    build = live_build(source)
    assert build is not None, "the session's index is built by the assistant fixture"
    (target / "builds").mkdir(parents=True)
    shutil.copytree(build.path, target / "builds" / build.path.name)
    shutil.copytree(source / "models", target / "models")
    (target / "current").symlink_to(Path("builds") / build.path.name)
    return target


def file_hashes(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def built(settings: Settings, assistant: Assistant) -> Path:
    """The session's index folder, built and fitted (by the session's assistant)."""
    return settings.index_dir


def start_server(index_dir: Path, tmp: Path, name: str, **extra: str) -> ServerProcess:
    """A real server on ``index_dir`` on a free loopback port, checking itself every two seconds."""
    env = server_env(
        index_dir,
        tmp / "data",
        free_port(),
        ASSISTANT_SELFCHECK_INTERVAL=SELFCHECK_INTERVAL,
        ASSISTANT_HEAL_RETRY_SECONDS=HEAL_RETRY,
        ASSISTANT_RATE_LIMIT_PER_MINUTE="1000000",
        **extra,
    )
    server = ServerProcess(port=int(env["ASSISTANT_PORT"]), env=env, log_path=tmp / f"{name}.log").start()
    try:
        server.wait_ready()
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    return server


@pytest.fixture
def server_on(tmp_path: Path) -> Iterator[Any]:
    """Start servers with :func:`start_server`; every one is stopped when the test ends."""
    started: list[ServerProcess] = []

    def start(index_dir: Path, name: str = "server", **extra: str) -> ServerProcess:
        server = start_server(index_dir, tmp_path, name, **extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def assert_no_leak(response: httpx.Response) -> None:
    """No exception text, file name or path in a response a client sees."""
    for leak in LEAKS:
        assert leak not in response.text, (leak, response.text[:300])


def alive(server: ServerProcess) -> bool:
    return server.process is not None and server.process.poll() is None


def killpg(process: Any) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
