"""Security headers and each page's Content-Security-Policy, on the app with a fake assistant (no model)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from server_fixtures import FakeAssistant

from assistant.corpus import load_corpus
from assistant.server import create_app
from assistant.settings import Settings

ALLOWED = "https://allowed.example"


class Page(HTMLParser):
    """The URLs a page refers to and the text of its inline scripts and styles, as a browser reads them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.urls: list[str] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.urls += [value for name, value in attrs if name in {"src", "href"} and value]
        if tag in self.inline and "src" not in found:
            self._open = tag
            self.inline[tag].append("")

    def handle_data(self, data: str) -> None:
        if self._open:
            self.inline[self._open][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == self._open:
            self._open = None


def request(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("10.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def sha256(text: str) -> str:
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"


def directives(header: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in header.split("; ")}


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        index_dir=tmp_path / "index",
        data_dir=tmp_path / "data",
        allowed_origins=[ALLOWED],
        rate_limit_per_minute=3,
        max_request_bytes=2048,
    )
    application = create_app(settings, FakeAssistant(load_corpus(settings.corpus_dir)))
    yield application
    application.state.service.close()


def test_every_response_carries_the_headers_errors_included(app: Any) -> None:
    responses = {
        "chat": request(app, "GET", "/"),
        "docs": request(app, "GET", "/docs"),
        "schema": request(app, "GET", "/openapi.json"),
        "health": request(app, "GET", "/api/health"),
        "unknown": request(app, "GET", "/api/nothing"),
        "closed": request(app, "POST", "/gradio_api/upload"),
        "too large": request(app, "POST", "/api/ask", json={"question": "x" * 3000}),
        "malformed": request(app, "POST", "/api/ask", content=b"{", headers={"content-type": "application/json"}),
    }
    responses["limited"] = [request(app, "POST", "/api/ask", json={"question": "q"}) for _ in range(4)][-1]
    assert responses["limited"].status_code == 429 and responses["too large"].status_code == 413
    for name, response in responses.items():
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", name
        assert headers["referrer-policy"] == "no-referrer", name
        assert headers["cross-origin-opener-policy"] == "same-origin", name
        assert headers["x-frame-options"] == "SAMEORIGIN", name
        policy = directives(headers["content-security-policy"])
        assert policy["frame-ancestors"] == ["'self'"], name
        assert policy["default-src"] == ["'none'"], name


def test_the_chat_page_runs_only_its_own_scripts_and_its_inline_ones_by_hash(app: Any) -> None:
    response = request(app, "GET", "/")
    page = parse(response.text)
    policy = directives(response.headers["content-security-policy"])
    assert page.inline["script"], "the Gradio page has inline scripts"
    assert policy["script-src"] == ["'self'", *[sha256(text) for text in page.inline["script"]]]
    assert "'unsafe-eval'" not in policy["script-src"] and "'unsafe-inline'" not in policy["script-src"]
    assert policy["style-src"] == ["'self'", "'unsafe-inline'"]  # Gradio's style attributes and <style> elements
    for name, sources in {
        "object-src": ["'none'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "base-uri": ["'self'"],
        "form-action": ["'none'"],
    }.items():
        assert policy[name] == sources, name


def test_a_changed_inline_script_would_not_run() -> None:
    from assistant.headers import CHAT

    page = b"<script>window.a = 1;</script><script src='/x.js'></script>"
    policy = directives(CHAT.header(page))
    assert policy["script-src"] == ["'self'", sha256("window.a = 1;")]
    assert sha256("window.a = 2;") not in CHAT.header(page)


def test_the_widget_page_allows_nothing_inline_and_only_allowed_sites_frame_it(app: Any) -> None:
    response = request(app, "GET", "/widget")
    page = parse(response.text)
    assert page.inline == {"script": [], "style": []}
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'self'", ALLOWED]
    assert "x-frame-options" not in response.headers


def test_docs_refer_only_to_this_server_and_every_asset_loads(app: Any) -> None:
    response = request(app, "GET", "/docs")
    assert response.status_code == 200
    page = parse(response.text)
    assert len(page.urls) >= 3  # the stylesheet, the icon, the Swagger UI bundle
    for url in page.urls:
        absolute = urljoin("http://testserver/docs", url)
        assert urlsplit(absolute).netloc == "testserver", url
        asset = request(app, "GET", urlsplit(absolute).path)
        assert asset.status_code == 200 and asset.content, url
    assert "cdn" not in response.text.lower()
    policy = directives(response.headers["content-security-policy"])
    assert policy["script-src"] == ["'self'", *[sha256(text) for text in page.inline["script"]]]
    assert policy["style-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert request(app, "GET", "/redoc").status_code == 404  # ReDoc's bundle loads its logo from its maker's CDN


def test_the_brief_page_runs_no_script_and_its_one_stylesheet_by_hash(app: Any) -> None:
    answer = request(app, "POST", "/api/ask", json={"question": "Can I release it?"}).json()
    response = request(app, "GET", f"/api/brief/{answer['answer_id']}", params={"format": "html"})
    page = parse(response.text)
    policy = directives(response.headers["content-security-policy"])
    assert "script-src" not in policy and policy["default-src"] == ["'none'"]
    assert len(page.inline["style"]) == 1 and policy["style-src"] == [sha256(page.inline["style"][0])]
