"""The chat page, mounted once it is built: the API answers first.

Importing Gradio and building the chat take seconds of a cold start (``docs/performance.md``) that a question to
``/api/ask`` or the widget does not need. ``assistant serve`` therefore mounts a :class:`DeferredApp` at ``/``
and builds the chat only after the answerer's first load has ended, so the two never compete for the
interpreter. Until then every path under it gets a clear 503 with ``Retry-After``: ``/`` a small page that
reloads itself (with the disclaimer), anything else the API's JSON error. Once built, requests go to the chat
unchanged.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.ratelimit import ErrorBody, send_json

STARTING_RETRY_SECONDS = 2
"""How often the starting page reloads itself (``Retry-After`` too): the chat is built within a few seconds of
the answerer being ready (``docs/performance.md``), so a visitor waits at most this much longer than needed."""

CHAT_STARTING = "The chat is starting; please try again in a few seconds. /api/ask already answers."
PAGE_STARTING = "The chat is starting; this page reloads by itself in a few seconds."
CHAT_FAILED = "The chat page could not start; the server's log says why. The API at /api/ask still answers."


def starting_page(disclaimer: str, message: str, title: str, reload: bool = True) -> bytes:
    """The page shown at ``/`` until the chat is mounted: the message, then the disclaimer; no script, no style."""
    refresh = f'<meta http-equiv="refresh" content="{STARTING_RETRY_SECONDS}">' if reload else ""
    return (
        "<!doctype html>\n"
        f'<html lang="en"><head><meta charset="utf-8">{refresh}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>\n"
        f'<body><main><h1>{html.escape(title)}</h1><p role="status">{html.escape(message)}</p>'
        f"<p><small>{html.escape(disclaimer)}</small></p></main></body></html>\n"
    ).encode()


class DeferredApp:
    """An ASGI app that answers 503 until :meth:`mount` gives it the app to pass requests to."""

    def __init__(
        self, disclaimer: str, title: str, error_body: ErrorBody, waiting: Callable[[], str | None] = lambda: None
    ) -> None:
        self.disclaimer = disclaimer
        self.title = title
        self.error_body = error_body
        self.waiting = waiting
        """What the answerer is still waiting for (its loading, a rebuild), said on the page first; None if nothing."""
        self.app: ASGIApp | None = None
        self.failed = False

    def status(self) -> str:
        """``ready``, ``starting`` or ``failed`` (for the health check)."""
        return "ready" if self.app is not None else "failed" if self.failed else "starting"

    def mount(self, app: ASGIApp) -> None:
        """From now on every request goes to ``app``."""
        self.app = app

    def fail(self) -> None:
        """The chat could not be built: say so instead of "starting"."""
        self.failed = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on once mounted; before that, answer 503 (and nothing for lifespan or websockets)."""
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        retry = [(b"retry-after", str(STARTING_RETRY_SECONDS).encode())]
        if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            waiting = self.waiting()
            message = CHAT_FAILED if self.failed else f"{waiting} {PAGE_STARTING}" if waiting else PAGE_STARTING
            page = starting_page(self.disclaimer, message, self.title, reload=not self.failed)
            headers = [
                (b"content-type", b"text/html; charset=utf-8"),
                (b"content-length", str(len(page)).encode()),
                (b"cache-control", b"no-store"),
                *retry,
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": page if scope["method"] == "GET" else b""})
            return
        message = CHAT_FAILED if self.failed else CHAT_STARTING
        await send_json(
            send, 503, self.error_body("chat_failed" if self.failed else "chat_starting", message, 503), retry
        )
