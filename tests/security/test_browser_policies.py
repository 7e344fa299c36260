"""In Debian's Chromium against the real server: no page breaks its own policy, and the docs need no other host."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Frame, Page, Route, expect
from server_fixtures import PROJECT_ROOT, LiveServer, browser, static_site

from assistant.corpus import Corpus

__all__ = ["browser"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TIMEOUT = 60_000
LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}
# Every frame records the policy violations the browser reports to it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(
  `${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`));
"""
_clients = itertools.count(1)


class Watched:
    """A browser context whose frames record policy violations and whose console is kept."""

    def __init__(self, browser: Browser) -> None:
        # Each context speaks as its own client (the test server trusts X-Forwarded-For from loopback).
        self.context: BrowserContext = browser.new_context(
            viewport={"width": 1100, "height": 1000},
            extra_http_headers={"x-forwarded-for": f"203.0.113.{next(_clients)}"},
        )
        self.context.set_default_timeout(TIMEOUT)
        self.context.add_init_script(RECORD_VIOLATIONS)
        self.console: list[str] = []
        self.page: Page = self.context.new_page()
        self.page.on("console", lambda message: self.console.append(message.text))

    def violations(self, frame: Page | Frame) -> list[str]:
        return list(frame.evaluate("window.__violations"))

    def policy_errors(self) -> list[str]:
        return [text for text in self.console if "Content Security Policy" in text or "Content-Security" in text]


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    view = Watched(browser)
    yield view
    view.context.close()


def test_docs_render_every_operation_with_every_outside_request_blocked(
    watched: Watched, live_server: LiveServer
) -> None:
    blocked: list[str] = []

    def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOOPBACK or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    watched.context.route("**/*", only_loopback)
    page = watched.page
    page.goto(live_server.url + "/docs")
    for path in ("/api/ask", "/api/feedback", "/api/brief/{answer_id}", "/api/health"):
        expect(page.get_by_role("link", name=path, exact=True)).to_be_visible(timeout=TIMEOUT)
    expect(page.locator(".opblock")).to_have_count(4)
    # Try /api/health from the page: Swagger UI calls this server and shows the answer.
    page.locator(".opblock-summary", has_text="/api/health").click()
    page.get_by_role("button", name="Try it out").click()
    page.get_by_role("button", name="Execute").click()
    expect(page.locator(".live-responses-table tbody .response-col_status").first).to_have_text("200", timeout=TIMEOUT)
    assert blocked == [], "the docs asked another host for something"
    assert watched.violations(page) == [] and watched.policy_errors() == []


def test_a_question_in_the_chat_is_answered_without_a_policy_violation(
    watched: Watched, live_server: LiveServer, corpus: Corpus
) -> None:
    page = watched.page
    page.goto(live_server.url + "/")
    box = page.locator("#question textarea")
    box.fill("I want to commercially release a remix built on AI-separated stems. Is that risky?")
    box.press("Enter")
    chat = page.locator("#chat")
    expect(chat).to_contain_text(corpus.disclaimer, timeout=TIMEOUT)
    expect(chat.locator('[data-testid="bot"]').first).to_contain_text("[1]")
    chat.get_by_role("button", name="Go to source [1]").first.click()  # chat.js: the marker opens its card
    expect(chat.locator("blockquote").first).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("button", name="Like", exact=True).first.click()
    expect(page.locator("#feedback-status")).to_contain_text("Feedback saved", timeout=TIMEOUT)
    expect(page.locator("#brief a")).to_have_text("Prepare a brief for a lawyer", timeout=TIMEOUT)
    with page.expect_popup() as opened:
        page.locator("#brief a").click()
    brief = opened.value
    expect(brief.locator("h1")).to_have_text("Brief for a lawyer", timeout=TIMEOUT)
    expect(brief.locator(".disclaimer")).to_contain_text(corpus.disclaimer)
    assert watched.violations(brief) == []
    assert watched.violations(page) == [] and watched.policy_errors() == []


def test_a_question_in_the_widget_is_answered_without_a_policy_violation(
    watched: Watched, live_server: LiveServer, corpus: Corpus, tmp_path: Path
) -> None:
    folder = tmp_path / "site"
    folder.mkdir()
    html = (PROJECT_ROOT / "examples" / "host-page.html").read_text(encoding="utf-8")
    (folder / "host-page.html").write_text(html.replace("http://127.0.0.1:7860", live_server.url), encoding="utf-8")
    with static_site(folder, live_server.allowed_site_port) as site:
        page = watched.page
        page.goto(f"{site}/host-page.html")
        page.get_by_role("button", name="Open help: Remix legal help").click()
        frame_locator = page.frame_locator('iframe[title="Remix legal help"]')
        frame_locator.locator("#question").fill("Does Spotify allow stem extraction?")
        frame_locator.locator("#question").press("Enter")
        reply = frame_locator.locator(".reply").first
        expect(reply.locator(".disclaimer")).to_contain_text(corpus.disclaimer, timeout=TIMEOUT)
        reply.locator("a.cite").first.click()
        expect(reply.locator("details.source-card[open] blockquote").first).to_be_visible(timeout=TIMEOUT)
        frame = next(f for f in page.frames if f.url.startswith(live_server.url + "/widget"))
        assert watched.violations(frame) == []
        assert watched.policy_errors() == []
