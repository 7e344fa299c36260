"""What the API, the chat UI and the widget share: the assistant, answer slots and feedback.

The server builds one :class:`AssistantService` and loads the assistant in the background; the routes and
pages only receive the service.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any

from assistant.brief import Brief, RecentTurns, build_brief
from assistant.corpus import Corpus
from assistant.errors import AssistantError, IndexNotReadyError
from assistant.feedback import FeedbackRecord, FeedbackStore, RecentAnswers, Vote, check_answer_id
from assistant.settings import Settings

if TYPE_CHECKING:
    from assistant.assistant import Assistant
    from assistant.schemas import Answer, Message

log = logging.getLogger("assistant.service")

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
        self.turns = RecentTurns(settings.briefs_remembered)
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
            self.turns.remember(question, answer, history)
        return answer

    def brief(self, answer_id: str) -> Brief:
        """The lawyer's brief for a recent answer and the conversation that led to it."""
        return build_brief(self.corpus, self.turns.conversation(answer_id))

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
            # Where the index lives on this machine is nobody's business outside it.
            index_info = {k: v for k, v in self._assistant.index_info.items() if k != "path"}
            info["model"] = index_info.get("embedding_model")
            info["index"] = index_info
        else:
            info["message"] = str(self._load_error) if self._load_error else "The assistant is loading its index."
        return info

    def close(self) -> None:
        """Flush and close the feedback database."""
        self.feedback_store.close()
