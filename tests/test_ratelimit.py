from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis
from server_fixtures import free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from store_fixtures import Redis, redis_server

from assistant import ratelimit
from assistant.ratelimit import (
    BodyLimitMiddleware,
    FallbackLimiter,
    Limiter,
    RateLimiter,
    RateLimitMiddleware,
    RedisRateLimiter,
    make_limiter,
)
from assistant.settings import Settings

__all__ = ["redis_server"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def body(code: str, message: str, status: int) -> dict[str, object]:
    return {"error": code, "message": message, "status": status, "disclaimer": "Not legal advice."}


def test_limit_per_client_in_a_sliding_window() -> None:
    clock = Clock()
    limiter = RateLimiter(3, window=60, clock=clock)
    assert [limiter.hit("a") for _ in range(3)] == [None, None, None]
    retry = limiter.hit("a")
    assert retry == pytest.approx(60)
    assert limiter.hit("b") is None  # another client has its own window
    clock.now += 30
    assert limiter.hit("a") == pytest.approx(30)
    clock.now += 30.5
    assert limiter.hit("a") is None


def test_limiter_memory_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_TRACKED_CLIENTS", 10)
    clock = Clock()
    limiter = RateLimiter(1, window=60, clock=clock)
    for n in range(50):
        clock.now += 0.01
        assert limiter.hit(f"client-{n}") is None
    assert len(limiter._hits) <= 10


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)


async def echo(request: Request) -> JSONResponse:
    data = await request.body()
    return JSONResponse({"received": len(data)})


def make_app(limit: int = 2, max_bytes: int = 1024, limiter: Limiter | None = None) -> Starlette:
    app = Starlette(routes=[Route("/api/ask", echo, methods=["GET", "POST"]), Route("/page", echo, methods=["POST"])])
    limiter = limiter or RateLimiter(limit)
    app.add_middleware(RateLimitMiddleware, limiter=limiter, prefixes=("/api/",), error_body=body)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_bytes, error_body=body)
    return app


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_middleware_answers_429_json_with_retry_after_on_limited_paths_only() -> None:
    async def scenario() -> list[httpx.Response]:
        async with client(make_app(limit=2)) as http:
            responses = [await http.post("/api/ask", content=b"{}") for _ in range(3)]
            responses.append(await http.get("/api/ask"))  # GET is not counted
            responses.append(await http.post("/page", content=b"{}"))  # not a limited path
            return responses

    responses = run(scenario())
    assert [r.status_code for r in responses] == [200, 200, 429, 200, 200]  # type: ignore[union-attr]
    limited = responses[2]  # type: ignore[index]
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"] == "rate_limited"
    assert "2 per minute" in limited.json()["message"]
    assert limited.json()["disclaimer"] == "Not legal advice."


def test_body_limit_rejects_declared_and_streamed_oversize_bodies() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 200

    async def scenario() -> list[httpx.Response]:
        async with client(make_app(limit=100, max_bytes=1024)) as http:
            return [
                await http.post("/page", content=b"x" * 1000),
                await http.post("/page", content=b"x" * 1025),
                await http.post("/page", content=chunks()),
                await http.post("/page", content=b"x" * 10, headers={"content-length": "abc"}),
            ]

    ok, declared, streamed, bogus = run(scenario())  # type: ignore[misc]
    assert ok.status_code == 200 and ok.json() == {"received": 1000}
    assert declared.status_code == 413 and declared.json()["error"] == "request_too_large"
    assert streamed.status_code == 413
    assert bogus.status_code == 413


def test_streamed_body_under_the_limit_reaches_the_app_intact() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 100

    async def scenario() -> httpx.Response:
        async with client(make_app(max_bytes=1024)) as http:
            return await http.post("/page", content=chunks())

    response = run(scenario())
    assert response.json() == {"received": 400}  # type: ignore[union-attr]


def redis_limiter(server: Redis, limit: int, window: float = 60) -> RedisRateLimiter:
    """A limiter on the real Redis, under a key prefix of its own so tests never share windows."""
    client = redis.Redis.from_url(server.url, socket_timeout=1)
    return RedisRateLimiter(client, limit, window=window, prefix=f"test:{uuid.uuid4().hex}:")


def test_redis_windows_are_shared_by_every_limiter_on_the_same_redis(redis_server: Redis) -> None:
    """Two limiters stand for two replicas: hits on one count on the other."""
    first = redis_limiter(redis_server, 3)
    second = RedisRateLimiter(redis.Redis.from_url(redis_server.url), 3, prefix=first.prefix)
    assert [first.hit("a"), second.hit("a"), first.hit("a")] == [None, None, None]
    retry = second.hit("a")
    assert retry is not None and 59 <= retry <= 60
    assert first.hit("a") is not None
    assert second.hit("b") is None  # another client has its own window


def test_redis_window_slides(redis_server: Redis) -> None:
    limiter = redis_limiter(redis_server, 2, window=1)
    assert [limiter.hit("a"), limiter.hit("a")] == [None, None]
    retry = limiter.hit("a")
    assert retry is not None and retry <= 1
    time.sleep(1.1)
    assert limiter.hit("a") is None


def test_middleware_answers_429_from_the_redis_limiter(redis_server: Redis) -> None:
    async def scenario() -> list[httpx.Response]:
        async with client(make_app(limiter=redis_limiter(redis_server, 2))) as http:
            return [await http.post("/api/ask", content=b"{}") for _ in range(3)]

    responses = run(scenario())
    assert [r.status_code for r in responses] == [200, 200, 429]  # type: ignore[union-attr]
    limited = responses[2]  # type: ignore[index]
    assert limited.json()["error"] == "rate_limited" and limited.json()["disclaimer"] == "Not legal advice."


def test_settings_choose_redis_or_the_in_process_limiter(redis_server: Redis) -> None:
    local = make_limiter(Settings(_env_file=None, rate_limit_per_minute=5))  # type: ignore[call-arg]
    assert isinstance(local, RateLimiter) and local.limit == 5
    shared = make_limiter(Settings(_env_file=None, rate_limit_per_minute=5, redis_url=redis_server.url))  # type: ignore[call-arg]
    assert isinstance(shared, FallbackLimiter) and isinstance(shared.primary, RedisRateLimiter)
    assert shared.limit == 5 and shared.blocking


def test_unreachable_redis_falls_back_to_counting_in_process_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing listens on the port: every request is still counted (here), none fails, one log line."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, rate_limit_per_minute=2, redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_timeout=0.5
    )
    limiter = make_limiter(settings)
    with caplog.at_level(logging.WARNING, logger="assistant.ratelimit"):
        results = [limiter.hit("a") for _ in range(4)]
    assert results[:2] == [None, None] and results[2] is not None and results[3] is not None
    assert isinstance(limiter, FallbackLimiter) and limiter.degraded
    assert len([r for r in caplog.records if "unreachable" in r.message]) == 1

    async def scenario() -> httpx.Response:
        async with client(make_app(limiter=make_limiter(settings))) as http:
            for _ in range(2):
                await http.post("/api/ask", content=b"{}")
            return await http.post("/api/ask", content=b"{}")

    limited = run(scenario())
    assert limited.status_code == 429 and limited.json()["disclaimer"] == "Not legal advice."  # type: ignore[union-attr]


class FlakyShared:
    """Stands in for the Redis limiter (same interface) in a unit test of the fallback's switching."""

    def __init__(self) -> None:
        self.limit = 100
        self.blocking = True
        self.up = False
        self.calls = 0

    def hit(self, client: str) -> float | None:
        self.calls += 1
        if not self.up:
            raise redis.ConnectionError("down")
        return None


def test_fallback_retries_redis_after_the_pause_and_logs_recovery(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    shared = FlakyShared()
    limiter = FallbackLimiter(shared, RateLimiter(100, clock=clock), (redis.RedisError,), retry_seconds=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="assistant.ratelimit"):
        assert limiter.hit("a") is None and limiter.degraded
        clock.now += 5
        assert limiter.hit("a") is None and shared.calls == 1  # not retried during the pause
        clock.now += 6
        shared.up = True
        assert limiter.hit("a") is None and shared.calls == 2 and not limiter.degraded
    messages = [record.message for record in caplog.records]
    assert len(messages) == 2 and "unreachable" in messages[0] and "reachable again" in messages[1]
