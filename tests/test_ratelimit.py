from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from assistant import ratelimit
from assistant.ratelimit import BodyLimitMiddleware, RateLimiter, RateLimitMiddleware


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


def make_app(limit: int = 2, max_bytes: int = 1024) -> Starlette:
    app = Starlette(routes=[Route("/api/ask", echo, methods=["GET", "POST"]), Route("/page", echo, methods=["POST"])])
    app.add_middleware(RateLimitMiddleware, limiter=RateLimiter(limit), prefixes=("/api/",), error_body=body)
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
