"""Request limits, enforced on the server for every caller.

A sliding one-minute window per client address covers everything that makes
the server work: API questions and feedback, and every event the chat UI or
the widget sends. Pages, scripts and health checks are not counted. Request
bodies are capped in size before any route parses them.

Where the windows live is chosen by settings (:func:`make_limiter`): in this
process (:class:`RateLimiter`), or in Redis (:class:`RedisRateLimiter`) so
that every replica counts against one window per client. If Redis cannot be
reached, :class:`FallbackLimiter` counts in this process instead, logs one
line when that starts and one when Redis is back, and tries Redis again every
``redis_retry_seconds``: limits are then per replica for a while, never
missing, and a request is never failed because Redis is down.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from assistant.settings import Settings

log = logging.getLogger("assistant.ratelimit")

WINDOW_SECONDS = 60.0
MAX_TRACKED_CLIENTS = 100_000
REDIS_KEY_PREFIX = "assistant:ratelimit:"
NETWORK_CHECK_THREADS = 8


class Limiter(Protocol):
    """Counts requests per client; :meth:`hit` says whether one more is allowed."""

    limit: int
    blocking: bool
    """True when :meth:`hit` may wait on the network (the middleware then calls it from a worker thread)."""

    def hit(self, client: str) -> float | None:
        """Count one request; returns None if allowed, else seconds until the client may retry."""


class RateLimiter:
    """At most ``limit`` hits per client in any ``window`` seconds; memory stays bounded."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window
        self.blocking = False
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


# A sliding window in one sorted set per client, checked and updated atomically on the Redis server (its own
# clock, so replicas with skewed clocks still share one window). Scores are times in ms.
_SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(tonumber(oldest[2]) + window - now, 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""


class RedisRateLimiter:
    """The same sliding window as :class:`RateLimiter`, kept in Redis and shared by every replica.

    Raises ``redis.RedisError`` when Redis cannot be reached; :class:`FallbackLimiter` handles that.
    """

    def __init__(self, client: Any, limit: int, window: float = WINDOW_SECONDS, prefix: str = REDIS_KEY_PREFIX) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window = window
        self.blocking = True
        self.prefix = prefix
        self._script = client.register_script(_SLIDING_WINDOW)

    def hit(self, client: str) -> float | None:
        """Count one request in the client's shared window."""
        args = [int(self.window * 1000), self.limit, uuid.uuid4().hex]
        wait_ms = int(self._script(keys=[self.prefix + client], args=args))
        return wait_ms / 1000 if wait_ms > 0 else None


class FallbackLimiter:
    """Uses ``primary`` (Redis) while it answers; counts with ``fallback`` (in-process) while it does not."""

    def __init__(
        self,
        primary: Limiter,
        fallback: Limiter,
        errors: tuple[type[BaseException], ...],
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.limit = primary.limit
        self.blocking = primary.blocking
        self._errors = errors
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._down_until: float | None = None
        self._lock = threading.Lock()

    @property
    def degraded(self) -> bool:
        """True while the shared limiter is unreachable and this process counts alone."""
        return self._down_until is not None

    def hit(self, client: str) -> float | None:
        """Count one request where the windows are shared, or here while they cannot be reached."""
        with self._lock:
            down_until = self._down_until
        if down_until is not None and self._clock() < down_until:
            return self.fallback.hit(client)
        try:
            retry = self.primary.hit(client)
        except self._errors as error:
            with self._lock:
                if self._down_until is None:
                    log.warning(
                        "Rate limits: Redis unreachable (%s); counting in this process, retrying every %.0f s",
                        type(error).__name__,
                        self._retry_seconds,
                    )
                self._down_until = self._clock() + self._retry_seconds
            return self.fallback.hit(client)
        if down_until is not None:
            with self._lock:
                self._down_until = None
            log.warning("Rate limits: Redis reachable again; limits are shared across replicas")
        return retry


def make_limiter(settings: Settings) -> Limiter:
    """Redis-backed windows (with the in-process fallback) when ``redis_url`` is set, else in-process ones."""
    local = RateLimiter(settings.rate_limit_per_minute)
    if settings.redis_url is None:
        return local
    import redis

    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout,
        socket_connect_timeout=settings.redis_timeout,
    )
    shared = RedisRateLimiter(client, settings.rate_limit_per_minute)
    return FallbackLimiter(shared, local, (redis.RedisError, OSError), settings.redis_retry_seconds)


ErrorBody = Callable[[str, str, int], dict[str, object]]


class RateLimitMiddleware:
    """Answers 429 (JSON, with ``Retry-After``) once a client exceeds its limit on the limited paths."""

    def __init__(
        self,
        app: ASGIApp,
        limiter: Limiter,
        prefixes: Iterable[str],
        error_body: ErrorBody,
        methods: Iterable[str] = ("POST",),
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.prefixes = tuple(prefixes)
        self.methods = frozenset(methods)
        self.error_body = error_body
        self._threads: anyio.CapacityLimiter | None = None

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
        key = client[0] if client else "unknown"
        if self.limiter.blocking:
            # Network checks run on their own few threads, so they never queue behind answers on the default pool.
            self._threads = self._threads or anyio.CapacityLimiter(NETWORK_CHECK_THREADS)
            retry_after = await anyio.to_thread.run_sync(self.limiter.hit, key, limiter=self._threads)
        else:
            retry_after = self.limiter.hit(key)
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
