"""Request limits, enforced on the server for every caller.

A sliding one-minute window per client address covers everything that makes
the server work: API questions and feedback, and every event the chat UI or
the widget sends. Pages, scripts and health checks are not counted. Request
bodies are capped in size before any route parses them.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 100_000


class RateLimiter:
    """At most ``limit`` hits per client in any ``window`` seconds; memory stays bounded."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, client: str) -> float | None:
        """Count one request; returns None if allowed, else seconds until the client may retry."""
        now = self._clock()
        with self._lock:
            hits = self._hits.get(client)
            if hits is None:
                if len(self._hits) >= MAX_TRACKED_CLIENTS:
                    self._evict_idle(now)
                hits = self._hits[client] = deque()
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window - now, 0.001)
            hits.append(now)
            return None

    def _evict_idle(self, now: float) -> None:
        idle = [key for key, hits in self._hits.items() if not hits or hits[-1] <= now - self.window]
        for key in idle:
            del self._hits[key]
        if len(self._hits) >= MAX_TRACKED_CLIENTS:  # all active: drop the oldest-seen to stay bounded
            oldest = min(self._hits, key=lambda key: self._hits[key][-1])
            del self._hits[oldest]


ErrorBody = Callable[[str, str, int], dict[str, object]]


class RateLimitMiddleware:
    """Answers 429 (JSON, with ``Retry-After``) once a client exceeds its limit on the limited paths."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        prefixes: Iterable[str],
        error_body: ErrorBody,
        methods: Iterable[str] = ("POST",),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.prefixes = tuple(prefixes)
        self.methods = frozenset(methods)
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count limited requests and turn away clients over their limit."""
        if (
            scope["type"] != "http"
            or scope["method"] not in self.methods
            or not scope["path"].startswith(self.prefixes)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        retry_after = self.limiter.hit(client[0] if client else "unknown")
        if retry_after is None:
            await self.app(scope, receive, send)
            return
        seconds = math.ceil(retry_after)
        message = f"Too many requests: the limit is {self.limiter.limit} per minute. Try again in {seconds} s."
        await send_json(
            send, 429, self.error_body("rate_limited", message, 429), [(b"retry-after", str(seconds).encode())]
        )


async def send_json(
    send: Send, status: int, body: dict[str, object], headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Answer a request from ASGI middleware with a small JSON body."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodyLimitMiddleware:
    """Answers 413 before any route reads a body larger than ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: ASGIApp, max_bytes: int, error_body: ErrorBody) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.error_body = error_body

    def _too_large(self) -> dict[str, object]:
        message = f"The request is too large; the limit is {self.max_bytes // 1024} KiB."
        return self.error_body("request_too_large", message, 413)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the declared length, then read a streamed body only up to the limit."""
        if scope["type"] != "http" or scope["method"] in {"GET", "HEAD", "OPTIONS"}:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await send_json(send, 413, self._too_large())
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        replay = iter(messages)

        async def replay_receive() -> Message:
            try:
                return next(replay)
            except StopIteration:
                return await receive()

        await self.app(scope, replay_receive, send)
