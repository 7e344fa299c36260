"""Security headers on every response, and each page's Content-Security-Policy.

Every response says ``nosniff``, sends no referrer, denies camera, microphone and geolocation, and keeps its
opener away from other sites. Every page gets the narrowest policy it works with (docs/security.md explains
each directive and each relaxation):

* the chat page (Gradio): scripts only from this server, plus the page's own inline scripts named by their
  SHA-256 (computed from the page as sent, so nothing else inline runs); styles from this server and inline,
  because Gradio writes style attributes and ``<style>`` elements at run time;
* the widget page: nothing inline at all; it is the only page other sites may frame (``frame-ancestors`` from
  ``settings.allowed_origins``);
* the API docs (Swagger UI): its assets from this server, its one inline script by its hash, no inline style,
  images also from ``data:`` URLs (its icons);
* the lawyer's brief: no script, its one inline stylesheet by its hash.

Every other page may be framed only by this server's own pages.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HASHED = "'hashes'"
"""Stands in a directive for the SHA-256 sources of the page's inline elements of that kind."""

_INLINE = {
    "script-src": re.compile(rb"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script", re.IGNORECASE | re.DOTALL),
    "style-src": re.compile(rb"<style[^>]*>(.*?)</style", re.IGNORECASE | re.DOTALL),
}


@dataclass(frozen=True)
class Policy:
    """A page's Content-Security-Policy; ``'hashes'`` in a directive becomes the hashes of the page's inline code."""

    directives: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def hashes_inline(self) -> bool:
        """Whether the page's body must be read to write the policy."""
        return any(HASHED in sources for sources in self.directives.values())

    def header(self, body: bytes = b"", frame_ancestors: str = "frame-ancestors 'self'") -> str:
        """The header's value for a page with this ``body``."""
        parts = []
        for name, sources in self.directives.items():
            values: list[str] = []
            for source in sources:
                if source == HASHED:
                    values += inline_hashes(body, _INLINE[name])
                else:
                    values.append(source)
            parts.append(" ".join([name, *dict.fromkeys(values)]) if values else f"{name} 'none'")
        parts.append(frame_ancestors)
        return "; ".join(parts)


def inline_hashes(body: bytes, pattern: re.Pattern[bytes]) -> list[str]:
    """``'sha256-…'`` of each inline element's text, as a browser hashes it (the bytes between the tags)."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(match.group(1)).digest()).decode()}'"
        for match in pattern.finditer(body)
    ]


SAME_ORIGIN_BASICS: dict[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "object-src": ("'none'",),
    "img-src": ("'self'",),
    "connect-src": ("'self'",),
    "base-uri": ("'none'",),
    "form-action": ("'none'",),
}

CHAT = Policy(
    {
        **SAME_ORIGIN_BASICS,
        "script-src": ("'self'", HASHED),
        # Gradio writes style attributes into its page (<html>, <body>, <gradio-app>) and inserts <style> elements
        # (the theme, the page's CSS) while it runs; neither can be known by hash beforehand.
        "style-src": ("'self'", "'unsafe-inline'"),
        "font-src": ("'self'",),
        # The page declares <base href="./">: its own address, the only base allowed.
        "base-uri": ("'self'",),
    }
)
WIDGET = Policy({**SAME_ORIGIN_BASICS, "script-src": ("'self'",), "style-src": ("'self'",)})
# Swagger UI's stylesheet draws its icons (the response table's, the copy button's) as data: SVG images.
DOCS = Policy(
    {**SAME_ORIGIN_BASICS, "script-src": ("'self'", HASHED), "style-src": ("'self'",), "img-src": ("'self'", "data:")}
)
BRIEF = Policy({**SAME_ORIGIN_BASICS, "img-src": ("'none'",), "connect-src": ("'none'",), "style-src": (HASHED,)})

DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
BRIEF_PREFIX = "/api/brief/"


def page_policy(path: str, widget_path: str) -> Policy:
    """The policy of the HTML page at ``path``."""
    if path == widget_path:
        return WIDGET
    if path in DOCS_PATHS:
        return DOCS
    if path.startswith(BRIEF_PREFIX):
        return BRIEF
    return CHAT


def frame_ancestors(origins: list[str]) -> str:
    """The ``frame-ancestors`` directive for the widget page."""
    if "*" in origins:
        return "frame-ancestors *"
    return " ".join(["frame-ancestors 'self'", *origins])


COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_REPLACED = {b"content-security-policy", b"x-frame-options", *(name for name, _ in COMMON_HEADERS)}


class SecurityHeadersMiddleware:
    """Adds the headers to every response, error responses included; an HTML page gets its page's policy."""

    def __init__(self, app: ASGIApp, embed_origins: list[str], widget_path: str) -> None:
        self.app = app
        self.widget_path = widget_path
        self.widget_ancestors = frame_ancestors(embed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap ``send`` so the headers go out with the response start.

        An HTML page whose policy names hashes is held until its body is complete (pages are small, never streamed).
        """
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        is_widget = path == self.widget_path
        policy = page_policy(path, self.widget_path)
        held: list[Message] = []
        body = bytearray()

        def start(message: Message, page_body: bytes | None) -> Message:
            headers = [(n, v) for n, v in message.get("headers", []) if n.lower() not in _REPLACED]
            headers += COMMON_HEADERS
            if page_body is not None:
                ancestors = self.widget_ancestors if is_widget else "frame-ancestors 'self'"
                headers.append((b"content-security-policy", policy.header(page_body, ancestors).encode()))
            else:
                headers.append((b"content-security-policy", b"default-src 'none'; frame-ancestors 'self'"))
            if not is_widget:
                headers.append((b"x-frame-options", b"SAMEORIGIN"))
            return {**message, "headers": headers}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                if not is_html(message):
                    await send(start(message, None))
                elif policy.hashes_inline:
                    held.append(message)
                else:
                    await send(start(message, b""))
                return
            if held and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await send(start(held.pop(), bytes(body)))
                await send({"type": "http.response.body", "body": bytes(body), "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_with_headers)


def is_html(message: Message) -> bool:
    """Whether a response start announces an HTML document."""
    for name, value in message.get("headers", []):
        if name.lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/html")
    return False
