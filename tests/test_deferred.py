"""The chat mounted after the API answers: the stand-in's replies, the switch-over, and a real server's start."""

from __future__ import annotations

import html
import signal
import threading
import time
from pathlib import Path

import httpx
from server_fixtures import FakeAssistant, ServerProcess, free_port, server_env
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from assistant.assistant import Assistant
from assistant.corpus import Corpus, load_corpus
from assistant.deferred import CHAT_FAILED, CHAT_STARTING, PAGE_STARTING, STARTING_RETRY_SECONDS, DeferredApp
from assistant.server import create_app, error_body
from assistant.settings import Settings

DISCLAIMER = "General information, not legal advice."


def deferred() -> DeferredApp:
    return DeferredApp(DISCLAIMER, "A <title>", lambda code, text, status: error_body(code, text, status, DISCLAIMER))


def make_settings(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data")  # type: ignore[call-arg]


def test_until_mounted_the_page_says_starting_with_the_disclaimer_and_reloads() -> None:
    client = TestClient(deferred())
    page = client.get("/")
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert page.headers["retry-after"] == str(STARTING_RETRY_SECONDS) and page.headers["cache-control"] == "no-store"
    assert f'http-equiv="refresh" content="{STARTING_RETRY_SECONDS}"' in page.text
    assert PAGE_STARTING in page.text and DISCLAIMER in page.text
    assert "A &lt;title&gt;" in page.text and "<script" not in page.text  # escaped, and nothing to run
    waiting = DeferredApp(DISCLAIMER, "t", deferred().error_body, lambda: "Loading the index.")
    assert f"Loading the index. {PAGE_STARTING}" in TestClient(waiting).get("/").text  # what the answerer waits for
    head = client.head("/")
    assert head.status_code == 503 and head.content == b""


def test_until_mounted_other_paths_get_the_apis_json_error() -> None:
    client = TestClient(deferred())
    for method, path in (("GET", "/gradio_api/info"), ("POST", "/gradio_api/queue/join"), ("GET", "/assets/x.js")):
        response = client.request(method, path)
        assert response.status_code == 503 and response.headers["retry-after"] == str(STARTING_RETRY_SECONDS)
        body = response.json()
        assert (body["error"], body["message"], body["status"]) == ("chat_starting", CHAT_STARTING, 503)
        assert body["disclaimer"] == DISCLAIMER


def test_a_failed_build_says_so_and_a_mounted_app_gets_every_request() -> None:
    app = deferred()
    assert app.status() == "starting"
    app.fail()
    failed = TestClient(app).get("/")
    assert app.status() == "failed" and html.escape(CHAT_FAILED) in failed.text and "refresh" not in failed.text
    assert TestClient(app).get("/gradio_api/info").json()["error"] == "chat_failed"
    app.mount(Starlette(routes=[Route("/{rest:path}", lambda request: PlainTextResponse(request.url.path))]))
    assert app.status() == "ready"
    page = TestClient(app).get("/gradio_api/info")
    assert page.status_code == 200 and page.text == "/gradio_api/info"


def test_served_chat_is_built_after_the_first_load_and_the_api_answers_before(tmp_path: Path) -> None:
    """In process, with the first load held back: "starting" until it ends, then the real Gradio chat."""
    settings = make_settings(tmp_path)
    corpus = load_corpus(settings.corpus_dir)
    app = create_app(settings, FakeAssistant(corpus, settings.max_question_chars), chat_later=True)
    service = app.state.service
    gate = threading.Event()
    waited = service.wait_for_first_outcome
    service.wait_for_first_outcome = lambda: gate.wait() and waited()
    with TestClient(app, base_url="http://127.0.0.1") as client:
        response = client.get("/api/health")
        health = response.json()
        assert response.status_code == 503 and health["ready"] is False and health["answering"] is True
        assert health["chat"] == "starting" and health["status"] == "chat starting"
        assert health["message"] == CHAT_STARTING and health["disclaimer"] == corpus.disclaimer
        asked = client.post("/api/ask", json={"question": "Is sampling legal?"})
        assert asked.status_code == 200 and asked.json()["disclaimer"] == corpus.disclaimer
        starting = client.get("/")
        assert starting.status_code == 503 and corpus.disclaimer in starting.text
        assert "content-security-policy" in starting.headers  # the server's headers wrap the stand-in too
        gradio = client.get("/gradio_api/info")
        assert gradio.status_code == 503 and gradio.headers["retry-after"]
        assert gradio.json()["disclaimer"] == corpus.disclaimer
        gate.set()
        deadline = time.monotonic() + 120
        while client.get("/api/health").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        health = client.get("/api/health").json()
        assert health["ready"] is True and health["status"] == "ok" and health["chat"] == "ready"
        page = client.get("/")
        assert page.status_code == 200 and "gradio" in page.text.lower() and corpus.article.title in page.text
        config = client.get("/config")
        assert config.status_code == 200 and config.json()["components"]  # Gradio's own route, queue started
    service.close()


def test_a_real_server_answers_the_api_before_its_chat_page_is_up(
    tmp_path: Path, settings: Settings, assistant: Assistant, corpus: Corpus
) -> None:
    """``python app.py``: questions are answered while ``/`` still says "starting"; then the chat comes up."""
    port = free_port()
    server = ServerProcess(
        port=port, env=server_env(settings.index_dir, tmp_path / "data", port), log_path=tmp_path / "server.log"
    ).start()
    seen: list[tuple[int, int]] = []  # (ask status, page status) while the API answered and health was not ready
    try:
        server.wait_listening()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                health = client.get("/api/health")
                if health.status_code == 200:
                    break
                if health.json().get("answering"):
                    asked = client.post("/api/ask", json={"question": "Is sampling legal?"})
                    page = client.get("/")
                    seen.append((asked.status_code, page.status_code))
                    if page.status_code == 503:
                        assert corpus.disclaimer in page.text and PAGE_STARTING in page.text
                time.sleep(0.05)
            assert client.get("/api/health").json()["chat"] == "ready"
            page = client.get("/")
            assert page.status_code == 200 and corpus.article.title in page.text
    finally:
        server.stop(signal.SIGTERM)
    assert (200, 503) in seen, f"the API never answered while the chat was starting: {seen}"
    log = server.log_path.read_text(errors="replace")
    assert "The chat is ready at /" in log
    assert "Free malloc pages returned to the system every 60 s" in log  # the server's heap trimmer, by default


def test_a_server_stopped_before_its_first_load_ends_does_not_wait_for_it(tmp_path: Path) -> None:
    """Closing the service wakes the chat's builder, which then builds nothing."""
    app = create_app(make_settings(tmp_path), chat_later=True)  # no lifespan run: the first load never starts
    service = app.state.service
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(service.wait_for_first_outcome()))
    waiter.start()
    service.close()
    waiter.join(30)
    assert result == [False]
