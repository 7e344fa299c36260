"""HTTP API routes under ``/api``, and the one place errors become JSON.

Every error response has the same shape (``error``, ``message``, ``status``,
``disclaimer``) and the right status: 400 bad input or malformed body, 404
unknown answer, 413 too long, 429 rate limited (see ``ratelimit``), 503 not
ready or busy. Input problems the assistant reports (empty, too long, bad
history) change nothing on the server.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from assistant.brief import BriefResponse, to_html, to_markdown
from assistant.errors import AssistantError, InputError
from assistant.feedback import MAX_COMMENT_CHARS, Vote
from assistant.schemas import Answer, Message
from assistant.service import BUSY_RETRY_SECONDS

if TYPE_CHECKING:
    from assistant.service import AssistantService

BUILD_HEADER = "X-Index-Build"
"""Response header of ``/api/ask``: the id of the index build the answer came from."""
INPUT_PROBLEM_STATUS = {"too_long": 413, "empty": 400, "invalid_history": 400}
API_METHODS = {"/api/ask": "POST", "/api/feedback": "POST", "/api/health": "GET"}
STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_long", 503: "not_ready"}


class AskRequest(BaseModel):
    """A question, with the conversation so far for follow-ups."""

    question: str = Field(
        description="The user's question (plain text).", examples=["Does Spotify allow stem extraction?"]
    )
    history: list[Message] = Field(
        default_factory=list, description="Earlier turns, oldest first: {role: 'user'|'assistant', content}."
    )


class FeedbackRequest(BaseModel):
    """A thumbs up/down (and optional comment) on one answer."""

    answer_id: str = Field(description="The answer_id returned by /api/ask.")
    vote: Vote = Field(description="'up' or 'down'.")
    comment: str | None = Field(default=None, description=f"Optional comment, at most {MAX_COMMENT_CHARS} characters.")
    question: str | None = Field(
        default=None,
        description="Ignored (accepted for older clients): the service stores its own copy of the question.",
    )
    answer: str | None = Field(
        default=None,
        description="Ignored (accepted for older clients): the service stores its own copy of the answer.",
    )


class FeedbackResponse(BaseModel):
    """Sent only once the feedback is committed to the database."""

    saved: bool = Field(description="Always true: the vote is stored.")
    answer_id: str
    vote: Vote
    comment: str | None
    updated_at: str


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: str = Field(description="Machine-readable code, e.g. 'too_long', 'rate_limited', 'index_not_ready'.")
    message: str = Field(description="What went wrong and what to do, safe to show to a user.")
    status: int = Field(description="The HTTP status, repeated.")
    disclaimer: str = Field(description="The article's Legal Disclaimer, verbatim.")
    detail: str = Field(
        default="",
        description="The message again, under the name the chat page's client shows in its error notice (so a "
        "rate-limited chat user reads the sentence, not the code).",
    )

    def model_post_init(self, context: object) -> None:
        """``detail`` repeats ``message``."""
        self.detail = self.detail or self.message


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "Bad input or malformed body",
        404: "Unknown answer id",
        413: "Question or body too long",
        429: "Rate limited (see Retry-After)",
        503: "Index not ready, or server busy",
    }.items()
}


def error_code(error: AssistantError) -> str:
    """``IndexNotReadyError`` → ``index_not_ready``; plain input errors → ``bad_request``."""
    if type(error) is InputError:
        return "bad_request"
    name = type(error).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "error"


def _validation_message(error: RequestValidationError) -> str:
    problems = []
    for item in error.errors():
        if item.get("type") == "json_invalid":
            return "The request body is not valid JSON."
        where = ".".join(str(part) for part in item.get("loc", ())[1:]) or "body"
        problems.append(f"{where}: {item.get('msg', 'invalid')}")
    return "The request is malformed: " + "; ".join(problems[:5])


def install_error_handlers(app: FastAPI, service: AssistantService) -> None:
    """Turn domain errors, malformed requests and HTTP errors into the one JSON error shape."""

    def respond(code: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
        body = ErrorResponse(error=code, message=message, status=status, disclaimer=service.disclaimer)
        return JSONResponse(body.model_dump(), status_code=status, headers=headers)

    async def on_assistant_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, AssistantError)
        headers = {"retry-after": str(BUSY_RETRY_SECONDS)} if error.status_code == 503 else None
        return respond(error_code(error), str(error), error.status_code, headers)

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        return respond("bad_request", _validation_message(error), 400)

    async def on_http_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, StarletteHTTPException)
        code = STATUS_CODES.get(error.status_code, "http_error")
        return respond(code, str(error.detail), error.status_code, dict(error.headers or {}))

    async def on_unexpected(_: Request, __: Exception) -> JSONResponse:
        return respond("internal_error", "Something went wrong on the server; please try again.", 500)

    app.add_exception_handler(AssistantError, on_assistant_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


def build_router(service: AssistantService) -> APIRouter:
    """``POST /api/ask``, ``POST /api/feedback``, ``GET /api/brief/{answer_id}``, ``GET /api/health``."""
    router = APIRouter(prefix="/api", tags=["assistant"])

    @router.post("/ask", response_model=Answer, responses=ERROR_RESPONSES)
    def ask(request: AskRequest, response: Response) -> Answer | JSONResponse:
        """Answer a question from the article and its sources, with citations, notices and the disclaimer.

        The ``X-Index-Build`` header names the index build that answered (as ``/api/health``'s ``index.build``).
        """
        answer, build = service.ask_with_build(request.question, request.history)
        headers = {BUILD_HEADER: build} if build else {}
        if answer.input_problem is not None:
            status = INPUT_PROBLEM_STATUS.get(answer.input_problem, 400)
            body = ErrorResponse(
                error=answer.input_problem, message=answer.answer, status=status, disclaimer=answer.disclaimer
            )
            return JSONResponse(body.model_dump(), status_code=status, headers=headers)
        response.headers.update(headers)
        return answer

    unknown_answer: dict[int | str, dict[str, Any]] = {
        404: {"model": ErrorResponse, "description": "An answer this service never gave"}
    }

    @router.post("/feedback", response_model=FeedbackResponse, responses={**ERROR_RESPONSES, **unknown_answer})
    def feedback(request: FeedbackRequest) -> FeedbackResponse:
        """Store a thumbs up/down with an optional comment on an answer this service gave; answered once committed."""
        record = service.feedback(request.answer_id, request.vote, request.comment)
        return FeedbackResponse(
            saved=True,
            answer_id=record.answer_id,
            vote=record.vote,
            comment=record.comment,
            updated_at=record.updated_at,
        )

    # The printable page and the Markdown file are documented beside the JSON, so a client (or a schema-driven test)
    # knows every content type this route answers with.
    brief_formats: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The brief: JSON by default, a printable HTML page with format=html, a Markdown file with "
            "format=markdown.",
            "content": {"text/html": {"schema": {"type": "string"}}, "text/markdown": {"schema": {"type": "string"}}},
        }
    }

    @router.get("/brief/{answer_id}", response_model=BriefResponse, responses={**ERROR_RESPONSES, **brief_formats})
    def brief(
        answer_id: str,
        format: Literal["json", "html", "markdown"] = Query(
            default="json",
            description="json: the brief's parts and its Markdown; html: a printable page; markdown: a .md file.",
        ),
    ) -> BriefResponse | HTMLResponse | PlainTextResponse:
        """A one-page brief to take to a lawyer, for a recent answer and the conversation before it.

        It holds the user's questions, the lawyer notices, the cited passages with their links, the article's
        checklist and the disclaimer: nothing the user or the corpus did not write.
        """
        made = service.brief(answer_id)
        headers = {"cache-control": "no-store"}
        if format == "html":
            return HTMLResponse(to_html(made), headers=headers)
        if format == "markdown":
            headers["content-disposition"] = f'attachment; filename="brief-{made.answer_id}.md"'
            return PlainTextResponse(to_markdown(made), media_type="text/markdown; charset=utf-8", headers=headers)
        return BriefResponse(brief=made, markdown=to_markdown(made))

    @router.get("/health", responses={503: {"description": "Still loading, failed to load, or the index damaged"}})
    def health() -> JSONResponse:
        """Whether the service is ready, with counts, embedding model, build and version (503 until ready).

        ``status`` is ``ok``, ``loading``, ``error``, ``index damaged`` (the live index failed its integrity
        check and is being rebuilt; questions get a maintenance reply meanwhile), ``chat starting`` or ``chat
        failed``. ``answering`` is true as soon as ``/api/ask`` answers; ``ready`` also needs the chat page
        (``chat``: ``ready``), which ``assistant serve`` builds just after the answerer has loaded.
        """
        info = service.health()
        if not info["ready"]:
            info["disclaimer"] = service.disclaimer
        return JSONResponse(info, status_code=200 if info["ready"] else 503)

    @router.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    def unknown_route(path: str, request: Request) -> None:
        """Unknown API paths and wrong methods answer in the API's JSON error shape, not the chat page's."""
        allowed = API_METHODS.get(f"/api/{path}") or ("GET" if path.startswith("brief/") else None)
        if allowed is not None:
            raise StarletteHTTPException(405, f"Use {allowed} for {request.url.path}.", headers={"allow": allowed})
        raise StarletteHTTPException(404, f"No API route {request.url.path}; see /docs.")

    return router
