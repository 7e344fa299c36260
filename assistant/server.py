"""The one server: chat UI at ``/``, help widget, and HTTP API under ``/api``.

:func:`create_app` wires the pieces (Gradio chat, API routes, widget, the store
shared by replicas, limits and security headers) into one FastAPI app; :func:`run_server`
serves it with uvicorn. The corpus (disclaimer, jurisdiction note) is loaded
at once so every page and error can show it; the model and index load in the
background, and until they are ready questions get 503 "not ready". ``assistant serve``
builds the chat page only after that first load (:mod:`assistant.deferred`), so the API
answers seconds sooner after a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistant.allocator import HeapTrimmer, limit_arenas
from assistant.api import BUILD_HEADER, ErrorResponse, build_router, install_error_handlers
from assistant.corpus import load_corpus
from assistant.deferred import DeferredApp
from assistant.errors import AssistantError
from assistant.headers import SecurityHeadersMiddleware
from assistant.ratelimit import BodyLimitMiddleware, ErrorBody, RateLimitMiddleware, make_limiter, send_json
from assistant.service import BUSY_MESSAGE, BUSY_RETRY_SECONDS, AssistantService
from assistant.settings import Settings
from assistant.widget import STATIC_DIR, WIDGET_PATH, widget_router

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from assistant.assistant import Assistant

log = logging.getLogger("assistant.server")

LIMITED_PREFIXES = ("/api/ask", "/api/feedback", "/gradio_api/")
# Gradio routes this app never uses: uploads, file serving and proxying, media streams, screen recordings,
# MCP, run history, dev reload, in-browser code editing, custom component servers, monitoring.
CLOSED_PREFIXES = (
    "/gradio_api/upload",
    "/gradio_api/file",
    "/gradio_api/proxy=",
    "/gradio_api/stream",
    "/gradio_api/process_recording",
    "/gradio_api/mcp",
    "/gradio_api/runs",
    "/gradio_api/dev",
    "/gradio_api/vibe",
    "/gradio_api/undo-vibe",
    "/gradio_api/component_server",
    "/monitoring",
)


OPEN_CALLS = {"/gradio_api/call/": frozenset({"chat"}), "/gradio_api/run/": frozenset({"chat", "predict"})}
"""What a program may call by name: only the chat event. ``run/predict`` is how the page itself sends its unqueued
events (a new chat) by index; Gradio checks those, and a failure there is answered as JSON."""
INTERNAL_ERROR = (
    "Something went wrong on the server while handling this request. Please try again; if it keeps happening, "
    "tell the site's owner."
)


class ClosedRoutesMiddleware:
    """Closes unused routes with a JSON 404; a failure under Gradio's routes gets a JSON 500, never a trace.

    A full chat queue (Gradio's 503) gets the JSON 503 ``server_busy`` with ``Retry-After``, as ``/api/ask`` does.
    """

    def __init__(self, app: ASGIApp, prefixes: Sequence[str], error_body: ErrorBody) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)
        self.error_body = error_body

    def closed(self, path: str) -> bool:
        """A closed route, or a chat event called by a name that is not open (the vote handler, say)."""
        if path.startswith(self.prefixes):
            return True
        for prefix, names in OPEN_CALLS.items():
            if path.startswith(prefix):
                return path[len(prefix) :].split("/", 1)[0] not in names
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse closed paths; pass everything else through, turning a failure into a JSON 500."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.closed(scope["path"]):
            await send_json(send, 404, self.error_body("not_found", "This route is not available on this server.", 404))
            return
        if not scope["path"].startswith("/gradio_api/"):
            await self.app(scope, receive, send)
            return
        state = {"started": False, "failed": False, "busy": False, "answered": False}

        async def answer_failure() -> None:
            if state["answered"]:
                return
            state["answered"] = True
            if state["busy"]:  # Gradio's queue is full: the caller may try again, as from /api/ask
                body = self.error_body("server_busy", BUSY_MESSAGE, 503)
                await send_json(send, 503, body, [(b"retry-after", str(BUSY_RETRY_SECONDS).encode())])
                return
            await send_json(send, 500, self.error_body("internal_error", INTERNAL_ERROR, 500))

        async def tracked(message: Message) -> None:
            # A 5xx from Gradio (plain text, from its own error middleware) is replaced by the JSON error; its
            # 503 (the chat's queue is full) by the same "busy" answer /api/ask gives.
            if message["type"] == "http.response.start":
                state["started"] = True
                state["failed"] = int(message["status"]) >= 500
                state["busy"] = int(message["status"]) == 503
            if state["failed"]:
                await answer_failure()
                return
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as error:  # Gradio's handlers raise on malformed calls; the caller gets JSON, not a trace
            log.warning("%s %s failed: %s", scope["method"], scope["path"], type(error).__name__)
            if state["started"] and not state["failed"]:
                raise
            await answer_failure()


def _build_chat(app: FastAPI, service: AssistantService, settings: Settings) -> tuple[ASGIApp, Any]:
    """Import Gradio and build the chat (seconds of work; run in a thread, off the event loop)."""
    from assistant.ui import chat_app

    return chat_app(app, service, settings)


def check_origins(origins: Sequence[str]) -> list[str]:
    """Normalise ``allowed_origins``; each must be ``scheme://host[:port]`` (or ``*``)."""
    cleaned: list[str] = []
    for origin in origins:
        value = origin.strip().rstrip("/")
        if value == "*":
            cleaned.append(value)
            continue
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path or parts.query:
            raise AssistantError(
                f"ASSISTANT_ALLOWED_ORIGINS: {origin!r} is not an origin; use the form https://example.com[:port]."
            )
        cleaned.append(f"{parts.scheme}://{parts.netloc.lower()}")
    return cleaned


def error_body(code: str, message: str, status: int, disclaimer: str) -> dict[str, object]:
    """The one JSON shape of every API error (the API's ``ErrorResponse``); it always carries the disclaimer."""
    return ErrorResponse(error=code, message=message, status=status, disclaimer=disclaimer).model_dump()


def create_app(settings: Settings, assistant: Assistant | None = None, *, chat_later: bool = False) -> FastAPI:
    """Build the whole server; pass ``assistant`` to reuse one already loaded (tests do).

    With ``chat_later`` (``assistant serve``) the chat page is built once the answerer's first load has ended,
    and ``/`` says "starting" until then; otherwise it is built here, before the server starts.
    """
    origins = check_origins(settings.allowed_origins)
    corpus = load_corpus(settings.corpus_dir, settings.article_url)
    service = AssistantService(settings, corpus, assistant)

    def disclaimed(code: str, message: str, status: int) -> dict[str, object]:
        return error_body(code, message, status, service.disclaimer)

    deferred = (
        DeferredApp(service.disclaimer, corpus.article.title, disclaimed, service.waiting_message)
        if chat_later
        else None
    )
    if deferred is not None:
        service.chat_status = deferred.status

    async def start_chat(app: FastAPI, stack: contextlib.AsyncExitStack, deferred: DeferredApp) -> None:
        """Build the chat in a thread once the first load has ended, start its queue here, then mount it."""
        if not await asyncio.to_thread(service.wait_for_first_outcome):
            return  # the server is stopping
        try:
            chat, chat_lifespan = await asyncio.to_thread(_build_chat, app, service, settings)
            await stack.enter_async_context(chat_lifespan())
        except Exception:  # the API keeps answering; the health check and the page say the chat failed
            log.exception("The chat page could not be built; /api/ask still answers")
            deferred.fail()
            return
        deferred.mount(chat)
        log.info("The chat is ready at /")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        try:
            async with contextlib.AsyncExitStack() as stack:  # on leaving: the chat's queue stops first
                starting = asyncio.create_task(start_chat(app, stack, deferred)) if deferred is not None else None
                try:
                    yield
                finally:
                    if starting is not None:
                        starting.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await starting
        finally:
            service.close()

    # Swagger UI from the assets fastapi-offline ships (under /static-offline-docs), not from a CDN. No ReDoc: its
    # bundle draws its maker's logo from the maker's CDN, which the docs' policy blocks.
    app = FastAPIOffline(
        title="Stem separation legal-information assistant",
        version=service.version,
        description=(
            "Grounded answers about the article *Is AI Stem Separation Legal?* and the sources it cites. "
            "General information, not legal advice; every answer carries the article's disclaimer."
        ),
        lifespan=lifespan,
        redoc_url=None,
        # No badge from the public validator: the page would send the schema's address to another site.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.service = service

    install_error_handlers(app, service)
    app.include_router(build_router(service))
    app.include_router(widget_router(service))
    app.mount("/widget-static", StaticFiles(directory=STATIC_DIR), name="widget-static")
    if deferred is not None:
        app.mount("/", deferred)
    else:
        from assistant.ui import mount_chat

        mount_chat(app, service, settings)

    # Added innermost first: headers wrap everything, CORS answers preflights before limits apply.
    app.add_middleware(
        RateLimitMiddleware,
        limiter=make_limiter(settings),
        prefixes=LIMITED_PREFIXES,
        error_body=disclaimed,
    )
    app.add_middleware(ClosedRoutesMiddleware, prefixes=CLOSED_PREFIXES, error_body=disclaimed)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes, error_body=disclaimed)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["content-type"],
        expose_headers=[BUILD_HEADER],
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware, embed_origins=origins, widget_path=WIDGET_PATH)
    return app


def run_server(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve chat, widget and API until interrupted (binds 127.0.0.1:7860 unless configured).

    ``settings.workers`` is the number of answer processes (:mod:`assistant.pool`); the server itself is always
    one process, because Gradio keeps each chat session in that process's memory.
    """
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if limit_arenas(settings.malloc_arenas):  # before any thread allocates
        log.info("malloc arenas capped at %d", settings.malloc_arenas)
    bind_host = host or settings.host
    bind_port = port or settings.port
    app = create_app(settings, chat_later=True)
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    log.info("Chat at http://%s:%d/ , API docs at /docs , widget script at /widget.js", shown, bind_port)
    config = uvicorn.Config(
        app,
        host=bind_host,
        port=bind_port,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=5,
        # X-Forwarded-For is believed only from the proxies the settings name (uvicorn would trust loopback).
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=",".join(settings.trusted_proxies) or "",
    )
    trimmer = HeapTrimmer(settings.malloc_trim_seconds)
    if trimmer.start():
        log.info("Free malloc pages returned to the system every %g s", settings.malloc_trim_seconds)
    try:
        uvicorn.Server(config).run()
    finally:
        trimmer.stop()
