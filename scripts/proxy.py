"""A small sticky reverse proxy for the local cluster (scripts/cluster.sh): one port in front of the replicas.

Each client address always goes to the same replica (a hash of the address, as nginx's ``ip_hash``), because
Gradio keeps a chat session's queue in the memory of the replica that serves it; the API would work with any
replica. If that replica refuses the connection, the next one takes the request. The client's address is
passed on in ``X-Forwarded-For`` (the replicas trust it only from this proxy: ASSISTANT_TRUSTED_PROXIES).
Responses are streamed through, so the chat's event stream arrives piece by piece.

    .venv/bin/python scripts/proxy.py --port 8080 --upstream http://127.0.0.1:7861 --upstream http://127.0.0.1:7862
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
from collections.abc import AsyncIterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def build_app(upstreams: list[str]) -> Starlette:
    """The proxy as an ASGI app over ``upstreams`` (base URLs)."""
    client = httpx.AsyncClient(timeout=httpx.Timeout(connect=5, read=None, write=60, pool=60))

    def order(address: str) -> list[str]:
        start = int.from_bytes(hashlib.sha256(address.encode()).digest()[:4], "big") % len(upstreams)
        return upstreams[start:] + upstreams[:start]

    async def forward(request: Request) -> StreamingResponse | JSONResponse:
        address = request.client.host if request.client else "unknown"
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        earlier = request.headers.get("x-forwarded-for")
        headers["x-forwarded-for"] = f"{earlier}, {address}" if earlier else address
        body = await request.body()
        for upstream in order(address):
            outgoing = client.build_request(
                request.method,
                upstream + request.url.path,
                params=request.url.query,
                headers=headers,
                content=body,
            )
            try:
                response = await client.send(outgoing, stream=True)
            except httpx.ConnectError:
                continue  # that replica is down: the next one answers
            kept = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP}

            async def relay(answer: httpx.Response = response) -> AsyncIterator[bytes]:
                async for chunk in answer.aiter_raw():
                    yield chunk

            return StreamingResponse(
                relay(), status_code=response.status_code, headers=kept, background=BackgroundTask(response.aclose)
            )
        return JSONResponse(
            {"error": "unavailable", "message": "No replica is answering; try again in a minute."}, status_code=503
        )

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--upstream", action="append", required=True, help="a replica's base URL (repeat)")
    args = parser.parse_args()
    uvicorn.run(build_app([u.rstrip("/") for u in args.upstream]), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
