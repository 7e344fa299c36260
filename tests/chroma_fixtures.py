"""A real Chroma server (``chroma run``, from the chromadb package) on a free loopback port, for the tests.

Test modules import what they need (``from chroma_fixtures import ChromaServer, chroma_server``), as with
``store_fixtures``. The server keeps its data in a temporary folder; :meth:`ChromaServer.stop` and
:meth:`ChromaServer.start` stop it and start it again on the same port and folder (an outage and its end).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from server_fixtures import free_port

READY_SECONDS = 60.0


def chroma_binary() -> str:
    """The ``chroma`` command installed beside this Python (the chromadb package's own)."""
    found = Path(sys.executable).parent / "chroma"
    if found.is_file():
        return str(found)
    which = shutil.which("chroma")
    if which is None:
        pytest.fail("The 'chroma' command is missing; install the project's dependencies (scripts/setup.sh).")
    return which


@dataclass
class ChromaServer:
    """``chroma run`` on 127.0.0.1:``port`` with its data in ``path``."""

    port: int
    path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChromaServer:
        """Start it and wait (bounded) until its heartbeat answers."""
        command = [chroma_binary(), "run", "--host", "127.0.0.1", "--port", str(self.port), "--path", str(self.path)]
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"chroma run exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"chroma run not ready after {READY_SECONDS} s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 30 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChromaServer]:
    """A Chroma server of the test module's own, stopped at the module's end."""
    folder = tmp_path_factory.mktemp("chroma")
    server = ChromaServer(port=free_port(), path=folder / "data", log_path=folder / "chroma.log").start()
    try:
        yield server
    finally:
        server.stop()
