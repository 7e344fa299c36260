"""Helpers for the server tests: a fake assistant for unit tests, and a real server process for end-to-end tests.

Test modules import what they need from here (``from server_fixtures import ...``);
nothing is registered in conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from assistant.corpus import Corpus
from assistant.guardrails import guard
from assistant.schemas import Answer, Citation, Escalation

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from assistant.service import AssistantService

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT_ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser); one per test module."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class FakeAssistant:
    """Same ``ask``/``corpus``/``index_info`` surface as the real one; answers from a real corpus section.

    Only for unit tests of one server piece; end-to-end tests use the real assistant.
    """

    def __init__(self, corpus: Corpus, max_chars: int = 4000) -> None:
        self.corpus = corpus
        self.max_chars = max_chars
        self.index_info: dict[str, Any] = {
            "chunks": 3,
            "embedding_model": "fake/model",
            "built_at": "2024-01-01T00:00:00Z",
        }
        self.calls: list[tuple[str, list[Any]]] = []
        self.answer_text = "Platform terms may prohibit stem extraction. [1]"

    def ask(self, question: str, history: list[Any] | None = None) -> Answer:
        self.calls.append((question, list(history or [])))
        disclaimer = self.corpus.disclaimer
        if not question.strip():
            empty = Answer(
                answer="Please type a question.", answered=False, disclaimer=disclaimer, input_problem="empty"
            )
            return guard(empty, [], disclaimer, [])
        if len(question) > self.max_chars:
            long = Answer(
                answer=f"Your question is {len(question)} characters long; the limit is {self.max_chars}.",
                answered=False,
                disclaimer=disclaimer,
                input_problem="too_long",
            )
            return guard(long, [], disclaimer, [])
        section = self.corpus.article_section("Platform Terms and Conditions")
        quote = section.text.split("\n\n")[1]
        escalations = []
        if "release" in question.lower():
            trigger = self.corpus.escalation_triggers[0]
            escalations.append(
                Escalation(trigger=trigger.id, text=trigger.text, source_title=self.corpus.article.title)
            )
        citation = Citation(
            n=1,
            source_id="us-copyright-act-106",
            source_title="U.S. Copyright Act — Exclusive Rights",
            section="§ 106. Exclusive rights in copyrighted works",
            url="https://www.copyright.gov/title17/92chap1.html#106",
            quote=quote,
        )
        # The real guard finishes every reply, as the assistant's last step does.
        answer = Answer(answer=self.answer_text, answered=True, citations=[citation], disclaimer=disclaimer)
        return guard(answer, escalations, disclaimer, [])


@dataclass
class ServerProcess:
    """A real server started with ``python app.py`` in its own process."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    command: list[str] = field(default_factory=lambda: [sys.executable, str(PROJECT_ROOT / "app.py")])

    def start(self) -> ServerProcess:
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            cwd=self.log_path.parent,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_listening(self, timeout: float = 180) -> None:
        """Until the port answers anything (the index may still be loading)."""
        self._wait(lambda response: True, timeout)

    def wait_ready(self, timeout: float = 600) -> None:
        """Until /api/health says the index is ready; fails at once if the server reports it could not start."""

        def ready(response: httpx.Response) -> bool:
            if response.status_code == 503 and response.json().get("status") == "error":
                raise RuntimeError(f"server could not start: {response.json().get('message')}; see {self.log_path}")
            return response.status_code == 200

        self._wait(ready, timeout)

    def _wait(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if done(httpx.get(f"{self.url}/api/health", timeout=5)):
                    return
            time.sleep(0.5)
        raise TimeoutError(f"server on port {self.port} not ready after {timeout} s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL leaves no chance to flush anything)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
def service(tmp_path: Path) -> Iterator[AssistantService]:
    """A real service (store, limits, guard) in a temp folder, answering with :class:`FakeAssistant`."""
    from assistant.corpus import load_corpus
    from assistant.service import AssistantService as Service
    from assistant.settings import Settings

    settings = Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data", stream_delay=0)  # type: ignore[call-arg]
    corpus = load_corpus(settings.corpus_dir)
    svc = Service(settings, corpus, FakeAssistant(corpus))  # type: ignore[arg-type]
    yield svc
    svc.close()


def server_env(index_dir: Path, data_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """Environment for a server process: temp dirs, a free port, no developer ASSISTANT_* leaking in."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASSISTANT_")}
    env.update(
        {
            "ASSISTANT_INDEX_DIR": str(index_dir),
            "ASSISTANT_DATA_DIR": str(data_dir),
            "ASSISTANT_CORPUS_DIR": str(PROJECT_ROOT / "corpus"),
            "ASSISTANT_HOST": "127.0.0.1",
            "ASSISTANT_PORT": str(port),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@contextlib.contextmanager
def static_site(directory: Path, port: int = 0) -> Iterator[str]:
    """Serve a folder over HTTP on a free loopback port (a stand-in for a site that embeds the widget)."""

    class Quiet(SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(directory), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


RATE_LIMIT = 40
STREAM_DELAY = "0.05"


@dataclass
class LiveServer:
    """The real server (real assistant, real index) shared by the API and browser tests of one session."""

    server: ServerProcess
    data_dir: Path
    allowed_site_port: int
    tmp: Path

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def allowed_origin(self) -> str:
        return f"http://127.0.0.1:{self.allowed_site_port}"

    def restart(self, sig: int = signal.SIGKILL) -> None:
        """Kill the process (by default with no chance to clean up) and start it again with ``assistant serve``."""
        self.server.stop(sig)
        self.server = ServerProcess(
            port=self.server.port,
            env=self.server.env,
            log_path=self.server.log_path,
            command=[
                sys.executable,
                "-m",
                "assistant.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.server.port),
            ],
        ).start()
        self.server.wait_ready()


_RUNNING: dict[str, LiveServer] = {}


@pytest.fixture(scope="session")
def live_server(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``python app.py`` on a free loopback port, using the session's index; started once, stopped at the end."""
    live = _RUNNING.get("main")
    if live is None:
        tmp = tmp_path_factory.mktemp("live-server")
        port, site_port = free_port(), free_port()
        env = server_env(
            settings.index_dir,
            tmp / "data",
            port,
            ASSISTANT_ALLOWED_ORIGINS=f'["http://127.0.0.1:{site_port}"]',
            ASSISTANT_RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT),
            # The tests stand in for clients behind a local reverse proxy: X-Forwarded-For names each one.
            ASSISTANT_TRUSTED_PROXIES='["127.0.0.1"]',
            ASSISTANT_STREAM_DELAY=STREAM_DELAY,
        )
        process = ServerProcess(port=port, env=env, log_path=tmp / "server.log").start()
        live = LiveServer(server=process, data_dir=tmp / "data", allowed_site_port=site_port, tmp=tmp)
        _RUNNING["main"] = live
        try:
            process.wait_ready()
        except BaseException:
            process.stop(signal.SIGKILL)
            _RUNNING.pop("main", None)
            raise
    yield live
    live.server.stop()
    _RUNNING.pop("main", None)
