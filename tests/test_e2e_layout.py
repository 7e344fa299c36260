"""Layout, keyboard use and accessibility of the chat and the widget at phone, tablet and desktop widths.

Debian's Chromium (headless) against the real server (real assistant and index), one server and one browser for
the module. At each width (and at 200 % zoom): after an answer, the answer's first line and the send box are in
view, nothing is wider than the screen, axe-core (bundled with axe-playwright-python, so it runs offline) finds no
serious or critical violation on the empty page or after an answer, and a keyboard alone gets from the first focus
to an open source card and a brief for a lawyer. Phone widths run as a phone browser (``is_mobile``), where a host
page wider than the screen stretches the box that ``position: fixed`` is measured against. Screenshots go to
``artifacts/screenshots/``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, BrowserContext, Frame, Page, expect
from server_fixtures import (
    ARTIFACTS,
    PROJECT_ROOT,
    LiveServer,
    browser,
    live_server,
    static_site,
)

from assistant.corpus import Corpus

__all__ = ["browser", "live_server"]

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# 640 × 430 is a 1280 × 860 window at 200 % zoom (zooming shrinks the viewport in CSS pixels).
WIDTHS = [320, 390, 640, 768, 1280]
HEIGHTS = {320: 640, 390: 844, 640: 430, 768: 1024, 1280: 860}
PHONE = 640
TIMEOUT = 60_000
SCREENSHOTS = ARTIFACTS / "screenshots"
BLOCKING = {"serious", "critical"}
WIDGET_TITLE = "Remix legal help"
QUESTION = "I want to commercially release a remix built on AI-separated stems. Is that risky?"
# A banner wider than any tested screen: the host page is always wider than the viewport.
WIDE_BANNER = (
    '<div style="width: 2000px; background: #eee; padding: 4px">A wide banner the host page did not fit.</div>'
)

_addresses = itertools.count(1)
_axe = Axe()


@pytest.fixture(scope="module")
def host_site(live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The example host page, pointed at the test server, with a banner wider than any screen, on an allowed origin."""
    folder = tmp_path_factory.mktemp("wide-host")
    html = (PROJECT_ROOT / "examples" / "host-page.html").read_text(encoding="utf-8")
    html = html.replace("http://127.0.0.1:7860", live_server.url).replace("<h1>", WIDE_BANNER + "\n  <h1>", 1)
    (folder / "host-page.html").write_text(html, encoding="utf-8")
    with static_site(folder, live_server.allowed_site_port) as site:
        yield f"{site}/host-page.html"


def new_context(browser: Browser, width: int) -> BrowserContext:
    """A browser of this width; below 640 px a phone browser. Each speaks as its own client (rate limits)."""
    phone = width < PHONE
    context = browser.new_context(
        viewport={"width": width, "height": HEIGHTS[width]},
        is_mobile=phone,
        has_touch=phone,
        extra_http_headers={"x-forwarded-for": f"203.0.113.{next(_addresses)}"},
    )
    context.set_default_timeout(TIMEOUT)
    return context


def blocking_violations(target: Page | Frame) -> list[str]:
    """axe-core's serious and critical violations, one line each (rule, what, where)."""
    results = _axe.run(target)
    return [
        f"{item['impact']} {item['id']}: {item['help']} at {[node['target'] for node in item['nodes']][:3]}"
        for item in results.response["violations"]
        if item["impact"] in BLOCKING
    ]


def overflow(target: Page | Frame) -> dict[str, Any]:
    """How far the document scrolls sideways, and the visible elements that stick out of the viewport."""
    return target.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const out = [];
          for (const el of document.querySelectorAll('body *')) {
            const box = el.getBoundingClientRect();
            if (!box.width || !box.height || getComputedStyle(el).visibility === 'hidden') continue;
            let clipped = false;  // inside a box that clips or scrolls its content: not sticking out of the page
            for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
              if (getComputedStyle(p).overflowX !== 'visible') { clipped = true; break; }
            }
            if (!clipped && (box.left < -1 || box.right > width + 1)) {
              out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' ' + Math.round(box.left) + '..'
                + Math.round(box.right));
            }
          }
          return {sideways: document.documentElement.scrollWidth - width, outside: out.slice(0, 5)};
        }"""
    )


def assert_in_view(target: Page | Frame, selector: str, within: str | None = None) -> None:
    """The element's top line is inside the viewport (and inside ``within``, a scrolling box, when given)."""
    inside = target.evaluate(
        """([selector, within]) => {
          const box = document.querySelector(selector).getBoundingClientRect();
          const line = Math.min(box.height, 20);
          const view = within ? document.querySelector(within).getBoundingClientRect()
                              : {top: 0, bottom: innerHeight, left: 0, right: innerWidth};
          return box.top >= Math.max(0, view.top) - 1 && box.top + line <= Math.min(innerHeight, view.bottom) + 1
            && box.left >= -1 && box.left < innerWidth;
        }""",
        [selector, within],
    )
    assert inside, f"{selector} is not in view"


def assert_at_top(target: Page | Frame, selector: str) -> None:
    """The element's top is at the top of the box that scrolls it, unless that box cannot scroll any further.

    Polled for up to five seconds: the reply's last cards are laid out after its text.
    """
    for _ in range(25):
        gap = scroll_gap(target, selector)
        if -2 <= gap <= 24:
            return
        time.sleep(0.2)
    raise AssertionError(f"{selector} starts {gap}px below the top of its scrolling box")


def scroll_gap(target: Page | Frame, selector: str) -> float:
    """How far below the top of its scrolling box the element starts (0 when the box is scrolled to its end)."""
    gap = target.evaluate(
        """selector => {
          const el = document.querySelector(selector);
          let box = el.parentElement;
          while (box && !(['auto', 'scroll'].includes(getComputedStyle(box).overflowY)
                          && box.scrollHeight > box.clientHeight)) box = box.parentElement;
          if (!box) return 0;
          const atEnd = box.scrollTop >= box.scrollHeight - box.clientHeight - 1;
          const gap = el.getBoundingClientRect().top - box.getBoundingClientRect().top;
          return atEnd && gap > 0 ? 0 : gap;
        }""",
        selector,
    )
    return float(gap)


def press_until(page: Page, key: str, focused: str, frame: Frame | None = None, limit: int = 60) -> None:
    """Press ``key`` until the focused element matches ``focused`` (in ``frame`` when given); bounded."""
    target = frame or page
    for _ in range(limit):
        if target.evaluate("s => !!document.activeElement && document.activeElement.matches(s)", focused):
            return
        page.keyboard.press(key)
    raise AssertionError(f"{key} never reached {focused}")


def assert_focus_visible(target: Page | Frame) -> None:
    style = target.evaluate(
        "() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert style[0] != "none" and style[1] != "0px", f"the focused element shows no focus ring: {style}"


def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name))


def check_brief(popup: Page, question: str, corpus: Corpus) -> None:
    popup.wait_for_load_state()
    expect(popup.locator("h1")).to_have_text("Brief for a lawyer")
    expect(popup.locator("blockquote").first).to_have_text(question)
    expect(popup.locator(".disclaimer")).to_contain_text(corpus.disclaimer)
    assert blocking_violations(popup) == []
    popup.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_chat_layout_keyboard_and_accessibility(
    browser: Browser, live_server: LiveServer, corpus: Corpus, width: int
) -> None:
    context = new_context(browser, width)
    page = context.new_page()
    try:
        page.goto(live_server.url + "/")
        expect(page.locator("#chat")).to_be_visible()
        about = page.locator("#about")
        if width < PHONE:  # header and jurisdiction note fold into one line, which opens on demand
            expect(about).not_to_have_attribute("open", "")
            assert page.locator("#page-header").bounding_box()["height"] < 60  # type: ignore[index]
            page.locator("#about summary").click()
            expect(page.locator("#jurisdiction")).to_contain_text("US, EU, UK (untested in most courts)")
            page.locator("#about summary").click()
        else:
            expect(page.locator("#jurisdiction")).to_be_visible()
        assert blocking_violations(page) == []
        assert overflow(page) == {"sideways": 0, "outside": []}

        # Keyboard only, from the top of the page: Tab to the question box.
        page.evaluate("document.activeElement && document.activeElement.blur()")
        press_until(page, "Tab", "#question textarea")
        page.keyboard.type(QUESTION)
        page.keyboard.press("Enter")
        expect(page.locator("#chat")).to_contain_text(corpus.disclaimer)
        expect(page.locator("#brief a")).to_be_visible()
        answer = '#chat .bot-row [data-testid="bot"]'
        assert_at_top(page, "#chat .bot-row")
        assert_in_view(page, answer, within="#chat")
        assert_in_view(page, "#question textarea")
        assert overflow(page) == {"sideways": 0, "outside": []}
        assert blocking_violations(page) == []
        screenshot(page, f"chat-{width}.png")

        # Back from the question box to the first [n] marker: Enter opens, shows and focuses its card.
        page.locator("#question textarea").focus()
        press_until(page, "Shift+Tab", "#chat button.cite")
        marker = page.evaluate("document.activeElement.textContent")
        page.keyboard.press("Enter")
        card = page.locator("#chat .thought-group > [role=button]:focus")
        expect(card).to_have_attribute("aria-expanded", "true")
        expect(card).to_contain_text(marker)
        assert_focus_visible(page)
        expect(page.locator("#chat .thought-group blockquote").first).to_be_visible()
        assert blocking_violations(page) == []

        # On to "Prepare a brief": it opens the printable brief of this conversation.
        press_until(page, "Tab", "#brief a")
        assert_focus_visible(page)
        with context.expect_page() as opened:
            page.keyboard.press("Enter")
        check_brief(opened.value, QUESTION, corpus)
    finally:
        context.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_widget_layout_keyboard_and_accessibility(browser: Browser, host_site: str, corpus: Corpus, width: int) -> None:
    context = new_context(browser, width)
    page = context.new_page()
    try:
        page.goto(host_site)
        launcher = page.get_by_role("button", name=f"Open help: {WIDGET_TITLE}")
        expect(launcher).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") > width  # the host page is wider than the screen
        box = launcher.bounding_box()
        assert box is not None
        assert box["x"] >= 0 and box["x"] + box["width"] <= width and box["y"] + box["height"] <= HEIGHTS[width], box
        assert blocking_violations(page) == []

        # Keyboard only: Tab from the top of the page to the launcher, Enter opens the panel.
        press_until(page, "Tab", "[data-stem-help-widget]")
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.className") == "launcher"
        page.keyboard.press("Enter")
        panel = page.locator(f'iframe[title="{WIDGET_TITLE}"]')
        expect(panel).to_be_visible()
        frame_box = panel.bounding_box()
        assert frame_box is not None
        if width < PHONE:  # the whole screen
            assert (frame_box["x"], frame_box["y"], frame_box["width"], frame_box["height"]) == (
                0,
                0,
                width,
                HEIGHTS[width],
            )
        else:
            assert frame_box["x"] >= 0 and frame_box["x"] + frame_box["width"] <= width and frame_box["y"] >= 0
        frame = panel.element_handle().content_frame()
        assert frame is not None
        frame.wait_for_selector("#question")
        close = frame.get_by_role("button", name="Close", exact=True)
        expect(close).to_be_visible()
        assert blocking_violations(frame) == []

        press_until(page, "Tab", "#question", frame=frame)
        page.keyboard.type(QUESTION)
        page.keyboard.press("Enter")
        reply = frame.locator(".reply").first
        expect(reply.locator(".disclaimer")).to_contain_text(corpus.disclaimer)
        expect(reply.locator(".notice")).to_contain_text("commercially release")
        assert_at_top(frame, ".reply")
        assert_in_view(frame, ".reply .answer", within="#log")
        assert_in_view(frame, "#question")
        assert overflow(frame) == {"sideways": 0, "outside": []}
        assert blocking_violations(frame) == []
        screenshot(page, f"widget-{width}.png")

        press_until(page, "Shift+Tab", "a.cite", frame=frame)
        page.keyboard.press("Enter")
        expect(reply.locator("details.source-card[open] summary:focus")).to_have_count(1)
        assert_focus_visible(frame)
        expect(reply.locator("details.source-card[open] blockquote").first).to_be_visible()

        press_until(page, "Tab", "a.brief", frame=frame)
        with context.expect_page() as opened:
            page.keyboard.press("Enter")
        check_brief(opened.value, QUESTION, corpus)

        # Close returns focus to the launcher, on the screen.
        close.focus()
        page.keyboard.press("Enter")
        expect(panel).to_be_hidden()
        assert page.evaluate("document.activeElement.shadowRoot.activeElement.className") == "launcher"
    finally:
        context.close()


@pytest.mark.parametrize("color", ["#ffd700", "#0b6e4f"])
def test_widget_reads_in_a_light_or_dark_site_colour(browser: Browser, live_server: LiveServer, color: str) -> None:
    """Text on the site's colour, and the colour used as text, keep AA contrast (axe's color-contrast)."""
    context = new_context(browser, 390)
    page = context.new_page()
    try:
        page.goto(f"{live_server.url}/widget?title=Help&color={color.replace('#', '%23')}")
        page.locator("#question").fill("Can I use stems from Spotify or YouTube in a remix?")
        page.locator("#question").press("Enter")
        expect(page.locator(".reply .disclaimer").first).to_be_visible()
        assert blocking_violations(page) == []
    finally:
        context.close()
