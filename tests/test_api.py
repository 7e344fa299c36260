"""The HTTP API, called with httpx against the real server (real assistant, real index) on loopback.

Each test that counts requests speaks as its own client: the server trusts
``X-Forwarded-For`` from loopback only (as behind a local reverse proxy), so a
test can stand for a distinct client address without sharing a rate-limit
window with the others.
"""

from __future__ import annotations

import itertools
import signal
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from server_fixtures import RATE_LIMIT, LiveServer, ServerProcess, free_port, live_server, server_env

from assistant.corpus import Corpus
from assistant.schemas import Answer
from assistant.store import DB_NAME

__all__ = ["live_server"]

pytestmark = [pytest.mark.slow]

_client_numbers = itertools.count(1)


@pytest.fixture
def http(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An httpx client speaking as a fresh client address."""
    address = f"198.51.100.{next(_client_numbers)}"
    with httpx.Client(base_url=live_server.url, headers={"x-forwarded-for": address}, timeout=60) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str, corpus: Corpus) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code
    assert body["status"] == status
    assert len(body["message"]) > 10
    assert body["disclaimer"] == corpus.disclaimer
    return body


def test_health_reports_ready_index_counts_model_and_version(http: httpx.Client, settings: Any) -> None:
    response = http.get("/api/health")
    assert str(settings.index_dir) not in response.text and "path" not in response.json()["index"]
    assert response.status_code == 200
    health = response.json()
    assert health["ready"] is True and health["status"] == "ok"
    assert health["index"]["chunks"] > 100
    assert health["model"] == health["index"]["embedding_model"] and "minilm" in health["model"].lower()
    assert health["version"] == "0.1.0"
    assert health["corpus"]["sources"] == 6
    assert isinstance(health["feedback"]["answers_rated"], int)


def test_ask_returns_a_grounded_answer_in_the_documented_schema(http: httpx.Client, corpus: Corpus) -> None:
    response = http.post("/api/ask", json={"question": "Does Spotify allow stem extraction?", "history": []})
    assert response.status_code == 200
    answer = Answer.model_validate(response.json())
    assert answer.answered and answer.input_problem is None
    assert len(answer.answer_id) == 32
    assert answer.citations, "an answered question cites its sources"
    for citation in answer.citations:
        assert f"[{citation.n}]" in answer.answer
        assert citation.quote.strip("- ") in corpus.text_of(citation.source_id)
    assert answer.disclaimer == corpus.disclaimer
    assert answer.rendered.rstrip().endswith(corpus.disclaimer)


def test_follow_up_uses_history_and_escalation_is_reported(http: httpx.Client) -> None:
    history = [
        {"role": "user", "content": "Is it legal to extract stems from a song I don't own?"},
        {"role": "assistant", "content": "Processing a copyrighted recording requires making a copy. [1]"},
    ]
    response = http.post(
        "/api/ask",
        json={"question": "I want to commercially release a remix built on AI-separated stems.", "history": history},
    )
    assert response.status_code == 200
    triggers = [item["trigger"] for item in response.json()["escalations"]]
    assert "commercial_release" in triggers


def test_brief_of_a_conversation_as_json_printable_page_and_markdown(http: httpx.Client, corpus: Corpus) -> None:
    first_question = "Does Spotify allow stem extraction?"
    first = http.post("/api/ask", json={"question": first_question}).json()
    history = [
        {"role": "user", "content": first_question},
        {"role": "assistant", "content": first["answer"], "answer_id": first["answer_id"]},
    ]
    question = "I want to commercially release a remix built on AI-separated stems."
    second = http.post("/api/ask", json={"question": question, "history": history}).json()

    response = http.get(f"/api/brief/{second['answer_id']}")
    assert response.status_code == 200, response.text
    brief, markdown = response.json()["brief"], response.json()["markdown"]
    assert brief["questions"] == [first_question, question]
    assert "commercial_release" in [notice["trigger"] for notice in brief["notices"]]
    cited = {c["quote"] for c in first["citations"] + second["citations"]}
    assert {p["quote"] for p in brief["passages"]} == cited
    corpus_text = "\n".join(corpus.texts.values())
    for passage in brief["passages"]:
        assert passage["quote"] in corpus_text
        assert passage["url"] is None or passage["url"] in corpus.urls
    assert markdown.rstrip().endswith(corpus.disclaimer) and brief["disclaimer"] == corpus.disclaimer

    page = http.get(f"/api/brief/{second['answer_id']}", params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert corpus.disclaimer in page.text and "@media print" in page.text
    download = http.get(f"/api/brief/{second['answer_id']}", params={"format": "markdown"})
    assert download.headers["content-type"].startswith("text/markdown")
    assert "attachment" in download.headers["content-disposition"] and download.text == markdown

    assert_error(http.get(f"/api/brief/{'0' * 32}"), 404, "unknown_brief", corpus)
    assert_error(http.get(f"/api/brief/{'0' * 32}", params={"format": "html"}), 404, "unknown_brief", corpus)
    assert_error(http.get("/api/brief/not-an-id"), 400, "bad_request", corpus)
    assert_error(http.post(f"/api/brief/{second['answer_id']}"), 405, "method_not_allowed", corpus)


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"question": ""}, 400, "empty"),
        ({"question": "   \n  "}, 400, "empty"),
        ({"question": "x" * 4001}, 413, "too_long"),
        ({"question": ["not", "text"]}, 400, "bad_request"),
        ({"question": "Is it legal?", "history": "not a list"}, 400, "bad_request"),
        ({"question": "Is it legal?", "history": [{"role": "judge", "content": "x"}]}, 400, "bad_request"),
        ({}, 400, "bad_request"),
    ],
)
def test_bad_questions_get_json_errors_with_the_right_status(
    http: httpx.Client, corpus: Corpus, payload: dict[str, Any], status: int, code: str
) -> None:
    assert_error(http.post("/api/ask", json=payload), status, code, corpus)


def test_malformed_and_oversized_bodies(http: httpx.Client, corpus: Corpus) -> None:
    broken = http.post("/api/ask", content=b'{"question": ', headers={"content-type": "application/json"})
    assert_error(broken, 400, "bad_request", corpus)
    huge = http.post("/api/ask", json={"question": "x" * (300 * 1024)})
    assert_error(huge, 413, "request_too_large", corpus)
    assert_error(http.get("/api/ask"), 405, "method_not_allowed", corpus)
    assert_error(http.get("/api/does-not-exist"), 404, "not_found", corpus)


def test_feedback_is_stored_durably_and_validated(http: httpx.Client, live_server: LiveServer, corpus: Corpus) -> None:
    answer = http.post("/api/ask", json={"question": "What does the article say about YouTube Content ID?"}).json()
    saved = http.post(
        "/api/feedback", json={"answer_id": answer["answer_id"], "vote": "down", "comment": "Cite the policy page"}
    )
    assert saved.status_code == 200
    assert saved.json()["saved"] is True and saved.json()["vote"] == "down"
    with sqlite3.connect(live_server.data_dir / DB_NAME) as db:
        row = db.execute(
            "SELECT question, answer, vote, comment FROM feedback WHERE answer_id = ?", (answer["answer_id"],)
        ).fetchone()
    assert row == (
        "What does the article say about YouTube Content ID?",
        answer["answer"],
        "down",
        "Cite the policy page",
    )
    assert_error(http.post("/api/feedback", json={"answer_id": "nope", "vote": "up"}), 400, "bad_request", corpus)
    assert_error(
        http.post("/api/feedback", json={"answer_id": answer["answer_id"], "vote": "meh"}), 400, "bad_request", corpus
    )
    unknown = http.post("/api/feedback", json={"answer_id": "f" * 32, "vote": "up"})
    assert_error(unknown, 404, "unknown_answer", corpus)


def test_rate_limit_answers_429_with_retry_after_per_client(
    http: httpx.Client, live_server: LiveServer, corpus: Corpus
) -> None:
    statuses = [http.post("/api/ask", json={"question": ""}).status_code for _ in range(RATE_LIMIT)]
    assert 429 not in statuses
    limited = http.post("/api/ask", json={"question": "Is sampling legal?"})
    body = assert_error(limited, 429, "rate_limited", corpus)
    assert f"{RATE_LIMIT} per minute" in body["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert http.post("/api/feedback", json={}).status_code == 429  # one window covers all question/feedback routes
    assert http.get("/api/health").status_code == 200  # reads stay open
    with httpx.Client(base_url=live_server.url, headers={"x-forwarded-for": "192.0.2.200"}, timeout=60) as other:
        assert other.post("/api/ask", json={"question": ""}).status_code == 400  # another client is unaffected


def test_limits_hold_for_callers_that_skip_the_browser(live_server: LiveServer) -> None:
    """A program calling the chat endpoint directly still meets the question length limit; nothing is added."""
    client = Client(live_server.url, verbose=False)
    try:
        with pytest.raises(AppError, match="the limit is 4,000"):
            client.predict("x" * 4001, api_name="/chat")
        with pytest.raises(AppError, match="Please type a question"):
            client.predict("   ", api_name="/chat")
    finally:
        client.close()


def test_cors_allow_list(live_server: LiveServer) -> None:
    preflight = {"access-control-request-method": "POST", "access-control-request-headers": "content-type"}
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        allowed = client.options("/api/ask", headers={"origin": live_server.allowed_origin, **preflight})
        assert allowed.headers.get("access-control-allow-origin") == live_server.allowed_origin
        denied = client.options("/api/ask", headers={"origin": "http://127.0.0.1:9", **preflight})
        assert "access-control-allow-origin" not in denied.headers


def test_openapi_docs_describe_the_api(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        assert client.get("/docs").status_code == 200
        schema = client.get("/openapi.json").json()
    ask = schema["paths"]["/api/ask"]["post"]
    assert {"200", "400", "413", "429", "503"} <= set(ask["responses"])
    assert {"Answer", "AskRequest", "ErrorResponse", "FeedbackRequest"} <= set(schema["components"]["schemas"])
    assert "disclaimer" in schema["components"]["schemas"]["Answer"]["properties"]


def test_index_not_ready_gives_503_while_a_fresh_server_builds(tmp_path: Path, corpus: Corpus) -> None:
    """A server on an empty index folder answers at once, with 503 until its index is built."""
    port = free_port()
    server = ServerProcess(
        port=port, env=server_env(tmp_path / "index", tmp_path / "data", port), log_path=tmp_path / "server.log"
    ).start()
    try:
        server.wait_listening()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            health = client.get("/api/health")
            assert health.status_code == 503 and health.json()["ready"] is False
            body = assert_error(
                client.post("/api/ask", json={"question": "Is sampling legal?"}), 503, "index_not_ready", corpus
            )
            assert "try again" in body["message"]
    finally:
        server.stop(signal.SIGKILL)


def test_forwarded_addresses_are_ignored_unless_the_proxy_is_trusted(settings: Any, tmp_path: Path) -> None:
    """Without a trusted proxy a caller cannot rotate X-Forwarded-For past the rate limit."""
    port = free_port()
    env = server_env(settings.index_dir, tmp_path / "data", port, ASSISTANT_RATE_LIMIT_PER_MINUTE="3")
    server = ServerProcess(port=port, env=env, log_path=tmp_path / "server.log").start()
    try:
        server.wait_listening()
        statuses = [
            httpx.post(
                f"{server.url}/api/ask", json={"question": ""}, headers={"x-forwarded-for": f"192.0.2.{i}"}, timeout=30
            ).status_code
            for i in range(4)
        ]
    finally:
        server.stop()
    assert 429 not in statuses[:3] and statuses[3] == 429
