"""The one server: chat UI at ``/``, help widget, and HTTP API under ``/api``.

:func:`create_app` wires the pieces (Gradio chat, API routes, widget, feedback
store, limits and security headers) into one FastAPI app; :func:`run_server`
serves it with uvicorn. The corpus (disclaimer, jurisdiction note) is loaded
at once so every page and error can show it; the model and index load in the
background, and until they are ready questions get 503 "not ready".
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.api import ErrorResponse
from assistant.corpus import Corpus, load_corpus
from assistant.errors import AssistantError, IndexNotReadyError
from assistant.feedback import FeedbackRecord, FeedbackStore, RecentAnswers, Vote, check_answer_id
from assistant.ratelimit import BodyLimitMiddleware, ErrorBody, RateLimiter, RateLimitMiddleware, send_json
from assistant.settings import Settings
from assistant.widget import STATIC_DIR, SecurityHeadersMiddleware

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if TYPE_CHECKING:
    from assistant.assistant import Assistant
    from assistant.schemas import Answer, Message

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
SLOT_WAIT_SECONDS = 60.0


BUSY_MESSAGE = "The assistant is busy right now; please try again in a minute."


class ServerBusyError(AssistantError):
    """Every answer slot is taken and too many questions are already waiting."""

    status_code = 503


def package_version() -> str:
    """Installed version of this project (``0+unknown`` when run from an uninstalled tree)."""
    try:
        return metadata.version("stem-separation-assistant")
    except metadata.PackageNotFoundError:
        return "0+unknown"


class AnswerSlots:
    """At most ``limit`` answers computed at once, at most ``max_waiting`` callers waiting."""

    def __init__(self, limit: int, max_waiting: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self, timeout: float = SLOT_WAIT_SECONDS) -> Iterator[None]:
        """Hold one slot for the duration of the block, or raise :class:`ServerBusyError`."""
        with self._lock:
            if self._waiting >= self._max_waiting:
                raise ServerBusyError(BUSY_MESSAGE)
            self._waiting += 1
        try:
            acquired = self._slots.acquire(timeout=timeout)
        finally:
            with self._lock:
                self._waiting -= 1
        if not acquired:
            raise ServerBusyError(BUSY_MESSAGE)
        try:
            yield
        finally:
            self._slots.release()


class AssistantService:
    """What the API and the chat UI share: the assistant, answer slots and feedback."""

    def __init__(self, settings: Settings, corpus: Corpus, assistant: Assistant | None = None) -> None:
        self.settings = settings
        self.corpus = corpus
        self.feedback_store = FeedbackStore(settings.data_dir)
        self.recent = RecentAnswers()
        self.slots = AnswerSlots(settings.concurrency_limit, settings.queue_max_size)
        self._assistant = assistant
        self._load_error: AssistantError | None = None
        self._loader: threading.Thread | None = None
        self.version = package_version()

    @property
    def disclaimer(self) -> str:
        """The article's Legal Disclaimer, verbatim; available before the model is loaded."""
        return self.corpus.disclaimer

    @property
    def ready(self) -> bool:
        """True once questions can be answered."""
        return self._assistant is not None

    def start_loading(self) -> None:
        """Load the model and index in the background (builds the index the first time)."""
        if self._assistant is not None or self._loader is not None:
            return
        self._loader = threading.Thread(target=self._load, name="assistant-loader", daemon=True)
        self._loader.start()

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (either way); True when ready."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self.ready

    def _load(self) -> None:
        from assistant.assistant import Assistant

        try:
            self._assistant = Assistant(self.settings, corpus=self.corpus)
            log.info("Assistant ready: %s", self._assistant.index_info)
        except AssistantError as error:
            log.error("The assistant could not start: %s", error)
            self._load_error = error
        except Exception as error:  # any failure must reach callers as a clear 503, not a hang
            log.exception("The assistant could not start")
            self._load_error = IndexNotReadyError(f"The assistant could not start: {error}")

    def assistant(self) -> Assistant:
        """The loaded assistant, or the reason there is none yet."""
        if self._assistant is not None:
            return self._assistant
        if self._load_error is not None:
            raise self._load_error
        raise IndexNotReadyError("The assistant is still loading its index; please try again in a minute.")

    def ask(self, question: str, history: Sequence[dict[str, Any] | Message] = ()) -> Answer:
        """Answer one question within the concurrency limits, and remember it for feedback."""
        assistant = self.assistant()
        with self.slots.take():
            answer = assistant.ask(question, list(history))
        if answer.input_problem is None:
            self.recent.remember(answer.answer_id, question, answer.answer)
        return answer

    def feedback(
        self,
        answer_id: str,
        vote: Vote,
        comment: str | None = None,
        question: str | None = None,
        answer: str | None = None,
    ) -> FeedbackRecord:
        """Store a vote on an answer; the server's own copy of the answer wins over what a client sends."""
        check_answer_id(answer_id)
        known_question, known_answer = self.recent.resolve(answer_id, question, answer)
        return self.feedback_store.record(answer_id, known_question, known_answer, vote, comment)

    def health(self) -> dict[str, Any]:
        """Readiness, counts, model and version for ``GET /api/health``."""
        info: dict[str, Any] = {
            "ready": self.ready,
            "status": "ok" if self.ready else ("error" if self._load_error else "loading"),
            "version": self.version,
            "corpus": {
                "article": self.corpus.article.title,
                "sources": len(self.corpus.sources),
                "sections": len(self.corpus.sections),
            },
            "feedback": {"answers_rated": self.feedback_store.count()},
        }
        if self._assistant is not None:
            index_info = dict(self._assistant.index_info)
            info["model"] = index_info.get("embedding_model")
            info["index"] = index_info
        else:
            info["message"] = str(self._load_error) if self._load_error else "The assistant is loading its index."
        return info

    def close(self) -> None:
        """Flush and close the feedback database."""
        self.feedback_store.close()


class ClosedRoutesMiddleware:
    """Closes routes this server never needs (uploads, file serving, MCP, monitoring) with a JSON 404."""

    def __init__(self, app: ASGIApp, prefixes: Sequence[str], error_body: ErrorBody) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse closed paths; pass everything else through."""
        if scope["type"] == "http" and scope["path"].startswith(self.prefixes):
            await send_json(send, 404, self.error_body("not_found", "This route is not available on this server.", 404))
            return
        await self.app(scope, receive, send)


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


def create_app(settings: Settings, assistant: Assistant | None = None) -> FastAPI:
    """Build the whole server; pass ``assistant`` to reuse one already loaded (tests do)."""
    from assistant.api import build_router, install_error_handlers
    from assistant.ui import mount_chat
    from assistant.widget import widget_router

    origins = check_origins(settings.allowed_origins)
    corpus = load_corpus(settings.corpus_dir, settings.article_url)
    service = AssistantService(settings, corpus, assistant)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start_loading()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="Stem separation legal-information assistant",
        version=service.version,
        description=(
            "Grounded answers about the article *Is AI Stem Separation Legal?* and the sources it cites. "
            "General information, not legal advice; every answer carries the article's disclaimer."
        ),
        lifespan=lifespan,
    )
    app.state.service = service

    def disclaimed(code: str, message: str, status: int) -> dict[str, object]:
        return error_body(code, message, status, service.disclaimer)

    install_error_handlers(app, service)
    app.include_router(build_router(service))
    app.include_router(widget_router(service))
    app.mount("/widget-static", StaticFiles(directory=STATIC_DIR), name="widget-static")
    mount_chat(app, service, settings)

    # Added innermost first: headers wrap everything, CORS answers preflights before limits apply.
    app.add_middleware(
        RateLimitMiddleware,
        limiter=RateLimiter(settings.rate_limit_per_minute),
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
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(SecurityHeadersMiddleware, embed_origins=origins)
    return app


def run_server(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve chat, widget and API until interrupted (binds 127.0.0.1:7860 unless configured)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    bind_host = host or settings.host
    bind_port = port or settings.port
    app = create_app(settings)
    shown = f"[{bind_host}]" if ":" in bind_host else bind_host
    log.info("Chat at http://%s:%d/ , API docs at /docs , widget script at /widget.js", shown, bind_port)
    config = uvicorn.Config(
        app,
        host=bind_host,
        port=bind_port,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
