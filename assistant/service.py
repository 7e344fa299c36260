"""What the API, the chat UI and the widget share: the assistant, answer slots and the store.

The server builds one :class:`AssistantService` and loads the assistant in the background; the routes and
pages only receive the service. Everything that must outlive a request (answers given, feedback, the question
log) goes to the store, shared by every replica, so the service itself holds no state a replica could lose.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from assistant.brief import Brief, build_brief, conversation, earlier_answer_ids
from assistant.corpus import Corpus
from assistant.errors import AssistantError, IndexNotReadyError, StoreError
from assistant.feedback import FeedbackRecord, UnknownAnswerError, Vote, check_answer_id, check_vote
from assistant.redact import redact
from assistant.settings import Settings
from assistant.store import IssuedAnswer, LoggedQuestion, Store, open_store

if TYPE_CHECKING:
    from assistant.index_server import IndexServer
    from assistant.schemas import Answer, Message

log = logging.getLogger("assistant.service")

SLOT_WAIT_SECONDS = 60.0


BUSY_MESSAGE = "The assistant is busy right now; please try again in a minute."
UNKNOWN_ANSWER = (
    "This service never gave an answer with this id, so the feedback was not saved. Vote on an answer using the "
    "answer_id that /api/ask (or the chat) returned with it."
)


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


class Answerer(Protocol):
    """What the service needs of whatever answers its questions.

    An :class:`~assistant.assistant.Assistant` in this process, or an :class:`~assistant.pool.AnswerPool` of several.
    """

    index_info: dict[str, Any]

    def ask(self, question: str, history: Sequence[Message | dict[str, Any]] = ()) -> Answer:
        """Answer one question in its conversation."""
        ...


class AssistantService:
    """What the API and the chat UI share: the assistant, answer slots and the store."""

    def __init__(
        self, settings: Settings, corpus: Corpus, assistant: Answerer | None = None, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.corpus = corpus
        self.store: Store = store if store is not None else open_store(settings)
        self.slots = AnswerSlots(settings.concurrency_limit, settings.queue_max_size)
        self._assistant = assistant
        self._load_error: AssistantError | None = None
        self._loader: threading.Thread | None = None
        self._reload_lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._server_state: dict[str, Any] = {"reachable": None, "live_build": None}
        """What the last poll of the index server found (health shows it)."""
        self._reload_error: AssistantError | None = None
        """Why the last load or reload failed (None after one succeeded)."""
        self._failed_build: str | None = None
        """A live build this server could not load for a reason other than an unreachable server."""
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
        """Load the model and index in the background (builds the index the first time).

        With an index server (``chroma_url``), a watcher also reads its live pointer every ``chroma_poll_seconds``
        and reloads when it names another build, or when the server is back after the first load failed.
        """
        if self.settings.chroma_url and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="index-watcher", daemon=True)
            self._watcher.start()
        if self._assistant is not None or self._loader is not None:
            return
        with self._reload_lock:
            self._loader = threading.Thread(target=self._load, args=("start",), name="assistant-loader", daemon=True)
            self._loader.start()

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until loading has finished (either way); True when ready."""
        if self._loader is not None:
            self._loader.join(timeout)
        return self.ready

    def reload(self, reason: str) -> None:
        """Build a new answerer in the background and swap it in when ready; on failure keep the old one.

        Questions keep going to the old answerer until the new one is complete; the swap is one assignment, so
        each question is answered wholly by one of them. A reload already under way is not started twice.
        """
        with self._reload_lock:
            if self._loader is not None and self._loader.is_alive():
                return
            self._loader = threading.Thread(target=self._load, args=(reason,), name="assistant-loader", daemon=True)
            self._loader.start()

    def _make_answerer(self) -> Answerer:
        if self.settings.workers > 1:
            from assistant.pool import AnswerPool

            return AnswerPool(self.settings, self.settings.workers)
        from assistant.assistant import Assistant

        return Assistant(self.settings, corpus=self.corpus)

    def _load(self, reason: str) -> None:
        if reason != "start":
            log.info("Loading a new assistant: %s", reason)
        try:
            fresh = self._make_answerer()
        except AssistantError as error:
            log.error("The assistant could not %s: %s", "start" if reason == "start" else "reload", error)
            self._failed(error)
            return
        except Exception as error:  # any failure must reach callers as a clear 503, not a hang
            log.exception("The assistant could not %s", "start" if reason == "start" else "reload")
            self._failed(IndexNotReadyError(f"The assistant could not start: {error}"))
            return
        old, self._assistant = self._assistant, fresh
        self._load_error = self._reload_error = None
        log.info(
            "Assistant ready (%d answer process(es)), build %s: %s",
            self.settings.workers,
            fresh.index_info.get("build"),
            fresh.index_info,
        )
        self._retire(old)

    def _failed(self, error: AssistantError) -> None:
        self._reload_error = error
        if self._assistant is None:  # with an answerer loaded, it keeps answering
            self._load_error = error

    @staticmethod
    def _retire(old: Answerer | None) -> None:
        """Let a replaced answerer finish the questions it holds, then free it."""
        from assistant.pool import AnswerPool

        if isinstance(old, AnswerPool):
            threading.Thread(target=old.close, kwargs={"drain": True}, name="answerer-retire", daemon=True).start()

    def _watch(self) -> None:
        """Poll the index server's live pointer; reload when it names a build other than the one served."""
        from assistant.index_server import IndexServer

        server = IndexServer(self.settings)
        wait = 0.0  # the first poll at once; the first load reads the pointer at the same time
        while not self._stopping.wait(wait):
            wait = self.settings.chroma_poll_seconds
            try:
                self._poll(server)
            except Exception:  # the watcher must outlive any surprise, or the server would never switch again
                log.exception("Index server: the pointer could not be checked")

    def _poll(self, server: IndexServer) -> None:
        from assistant.index_server import IndexServerUnavailableError

        try:
            live = server.version(self.settings.chroma_build)
        except IndexNotReadyError as error:
            if "message" not in self._server_state:
                log.error("Index server: %s", error)
            reachable = not isinstance(error, IndexServerUnavailableError)
            self._server_state = {"reachable": reachable, "live_build": None, "message": str(error)}
            return
        if "message" in self._server_state:
            log.info("Index server readable again; build %s is live", live.build_id)
        self._server_state = {"reachable": True, "live_build": live.build_id}
        serving = self._assistant.index_info.get("build") if self._assistant is not None else None
        if live.build_id in (serving, self._failed_build):
            return
        self.reload(f"build {live.build_id} is live in the index server (serving {serving or 'none'})")
        if self._loader is not None:
            self._loader.join()
        loaded = self._assistant.index_info.get("build") if self._assistant is not None else None
        if loaded != live.build_id and not isinstance(self._reload_error, IndexServerUnavailableError):
            # Not retried every poll (each try reads the whole version); a newer build is tried at once.
            self._failed_build = live.build_id

    def assistant(self) -> Answerer:
        """The loaded assistant, or the reason there is none yet."""
        if self._assistant is not None:
            return self._assistant
        if self._load_error is not None:
            raise self._load_error
        raise IndexNotReadyError("The assistant is still loading its index; please try again in a minute.")

    def ask(self, question: str, history: Sequence[dict[str, Any] | Message] = ()) -> Answer:
        """Answer one question within the concurrency limits; record it for feedback and in the question log."""
        return self.ask_with_build(question, history)[0]

    def ask_with_build(
        self, question: str, history: Sequence[dict[str, Any] | Message] = ()
    ) -> tuple[Answer, str | None]:
        """:meth:`ask`, also naming the index build the whole answer came from."""
        started = time.perf_counter()
        assistant = self.assistant()  # one answerer for the whole question, even if a reload swaps it meanwhile
        with self.slots.take():
            answer = assistant.ask(question, list(history))
        if answer.input_problem is None:
            self._record(question, answer, history, (time.perf_counter() - started) * 1000)
        build = assistant.index_info.get("build")
        return answer, str(build) if build is not None else None

    def brief(self, answer_id: str) -> Brief:
        """The lawyer's brief for a recent answer and the conversation that led to it."""
        return build_brief(self.corpus, conversation(self.store, answer_id))

    def _record(
        self, question: str, answer: Answer, history: Sequence[dict[str, Any] | Message], latency_ms: float
    ) -> None:
        """Keep the answer (so any replica accepts feedback on it) and its question-log line.

        The reply is given even if the database is down: the user still gets the answer, feedback on it is
        then refused as unknown, and the failure is logged.
        """
        issued = IssuedAnswer(
            answer_id=answer.answer_id,
            question=question,
            answer=answer.answer,
            reply=answer.model_dump(mode="json"),
            earlier=earlier_answer_ids(history, answer.answer_id),
        )
        logged = None
        if self.settings.question_log:
            logged = LoggedQuestion(
                question=redact(question, self.settings.redact_phone_regions),
                covered=answer.answered,
                sections=list(dict.fromkeys(f"{c.source_title} — {c.section}" for c in answer.citations)),
                triggers=[escalation.trigger for escalation in answer.escalations],
                latency_ms=round(latency_ms, 1),
            )
        try:
            self.store.record_answer(issued, logged)
        except StoreError as error:
            log.error("Answer %s not recorded: %s", answer.answer_id, error)

    def feedback(self, answer_id: str, vote: Vote, comment: str | None = None) -> FeedbackRecord:
        """Store a vote on an answer this service (any replica) gave, with its own copy of question and answer."""
        check_answer_id(answer_id)
        check_vote(vote)
        issued = self.store.get_answer(answer_id)
        if issued is None:
            raise UnknownAnswerError(UNKNOWN_ANSWER)
        return self.store.record_feedback(answer_id, issued.question, issued.answer, vote, comment)

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
            "store": self.store.backend,
        }
        try:
            info["feedback"] = {"answers_rated": self.store.count_feedback()}
        except StoreError as error:
            info["feedback"] = {"answers_rated": None, "message": str(error)}
        if self._assistant is not None:
            # Where the index lives on this machine is nobody's business outside it.
            index_info = {k: v for k, v in self._assistant.index_info.items() if k not in {"path", "files"}}
            info["model"] = index_info.get("embedding_model")
            info["index"] = index_info
        else:
            info["message"] = str(self._load_error) if self._load_error else "The assistant is loading its index."
        if self.settings.chroma_url:
            # The loaded build keeps answering from memory while the index server is away: an outage of the
            # server only delays the next switch, so it is reported here but does not take this server out.
            info["index_server"] = dict(self._server_state)
        return info

    def close(self) -> None:
        """Stop the watcher and the answer processes, if any; flush and close the store."""
        from assistant.pool import AnswerPool

        self._stopping.set()
        if isinstance(self._assistant, AnswerPool):
            self._assistant.close()
        self.store.close()
