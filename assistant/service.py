"""What the API, the chat UI and the widget share: the assistant, answer slots and the store.

The server builds one :class:`AssistantService` and loads the assistant in the background; the routes and
pages only receive the service. Everything that must outlive a request (answers given, feedback, the question
log) goes to the store, shared by every replica, so the service itself holds no state a replica could lose.
The answerer in use and its build are one :class:`Serving`, replaced whole by :meth:`AssistantService.reload`;
:mod:`assistant.selfcheck` verifies the build, rebuilds it when damaged and loads new ones.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.allocator import release_startup_heap, startup_heap
from assistant.brief import Brief, build_brief, conversation, earlier_answer_ids
from assistant.corpus import Corpus, load_corpus
from assistant.deferred import CHAT_FAILED, CHAT_STARTING
from assistant.errors import AssistantError, IndexDamagedError, IndexNotReadyError, StoreError
from assistant.feedback import FeedbackRecord, UnknownAnswerError, Vote, check_answer_id, check_vote
from assistant.index import expected_manifest, fresh_build
from assistant.integrity import check_live, read_build, seal, verify_build
from assistant.redact import redact
from assistant.selfcheck import SelfCheck
from assistant.serving import Answerer, Serving
from assistant.settings import Settings
from assistant.store import IssuedAnswer, LoggedQuestion, Store, open_store

if TYPE_CHECKING:
    from assistant.schemas import Answer, Message

log = logging.getLogger("assistant.service")

SLOT_WAIT_SECONDS = 60.0


BUSY_MESSAGE = "The assistant is busy right now; please try again in a minute."
BUSY_RETRY_SECONDS = 30
"""The ``Retry-After`` of a 503 (busy, or the index not ready): an answer slot frees within seconds, a build within
minutes; half a minute keeps a retrying client from adding to the load it met."""
UNKNOWN_ANSWER = (
    "This service never gave an answer with this id, so the feedback was not saved. Vote on an answer using the "
    "answer_id that /api/ask (or the chat) returned with it."
)


MAINTENANCE = (
    "The assistant's index failed its integrity check, so it is not answering until the index has been rebuilt. "
    "The rebuild runs by itself and takes a few minutes; please ask again then. If this message stays for more "
    "than half an hour, tell the site's owner."
)
LOADING = "The assistant is loading its index (the very first start builds it, which takes a few minutes)."
LOAD_FAILED = (
    "The assistant could not start; the server's log says why. It tries again by itself; if this stays, tell the "
    "site's owner."
)


def _retire(retiring: list[Serving], timeout: float) -> None:
    """Let a replaced answerer finish its requests and stop, then free it: its objects were frozen at start-up."""
    serving = retiring.pop()
    serving.retire(timeout)
    del serving
    release_startup_heap()


def _keeping(old: Serving | None) -> str:
    return f"still answering from build {old.build_id}" if old is not None else "nothing to answer with yet"


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
    """What the API and the chat UI share: the assistant, answer slots and the store.

    The answerer is loaded in the background and kept by :class:`~assistant.selfcheck.SelfCheck`: the live
    build is verified at start and periodically, a damaged one is rebuilt in a child process while every
    question gets the maintenance reply, and a new live build is loaded with :meth:`reload`.
    """

    def __init__(
        self, settings: Settings, corpus: Corpus, assistant: Answerer | None = None, store: Store | None = None
    ) -> None:
        self.settings = settings
        self.corpus = corpus
        self.store: Store = store if store is not None else open_store(settings)
        self.slots = AnswerSlots(settings.concurrency_limit, settings.queue_max_size)
        self._serving: Serving | None = Serving(assistant, None) if assistant is not None else None
        self._damaged = False
        self._load_error: AssistantError | None = None
        self._loading = False
        self._settled = threading.Event()
        self._first_outcome = threading.Event()
        self._closing = False
        self._check_lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self.reload_error: AssistantError | None = None
        """Why the last load or reload failed (None after one succeeded)."""
        self.index_server_state: dict[str, Any] = {"reachable": None, "live_build": None}
        """With an index server (``chroma_url``): what the self-check's last read of its live pointer found."""
        self.failed_build: str | None = None
        """A build in the index server this server could not load for a reason other than an unreachable server."""
        self.selfcheck = SelfCheck(self)
        self.version = package_version()
        self.chat_status: Callable[[], str] = lambda: "ready"
        """Whether the chat page is up: ``ready``, ``starting`` or ``failed`` (:mod:`assistant.deferred`)."""

    @property
    def disclaimer(self) -> str:
        """The article's Legal Disclaimer, verbatim; available before the model is loaded."""
        return self.corpus.disclaimer

    @property
    def ready(self) -> bool:
        """True once questions can be answered (loaded, and the index not found damaged)."""
        return self._serving is not None and not self._damaged

    @property
    def damaged(self) -> bool:
        """True from the moment the live index fails its check until a rebuilt one is loaded."""
        return self._damaged

    @property
    def serving(self) -> Serving | None:
        """The answerer in use and its build (None before the first load)."""
        return self._serving

    def start_loading(self) -> None:
        """Load the model and index in the background (builds the index the first time), then keep checking it.

        With an index server (``chroma_url``) the self-check instead reads its live pointer every
        ``chroma_poll_seconds`` and loads the build it names when that is not the one served.
        """
        if self._serving is not None or self._loading:
            self.settle()
            return
        self._loading = True
        self.selfcheck.start()

    def wait_until_ready(self, timeout: float | None = None) -> bool:
        """Block until the first load has finished (either way); True when ready."""
        if self._loading:
            self._settled.wait(timeout)
        return self.ready

    def settle(self) -> None:
        """Called once the first attempt to load has ended, either way."""
        self._settled.set()
        self._first_outcome.set()

    def wait_for_first_outcome(self) -> bool:
        """Block until the first load has ended either way, or the index was found damaged; False once closing.

        ``assistant serve`` builds the chat page after this, so that it never competes with the first load.
        """
        self._first_outcome.wait()
        return not self._closing

    def make_answerer(self) -> Answerer:
        """A new answerer on the live build: an assistant here, or a pool of answer processes."""
        if self.settings.workers > 0:
            from assistant.pool import AnswerPool

            return AnswerPool(self.settings, self.settings.workers)
        with startup_heap():
            from assistant.assistant import Assistant

            # The corpus is read again: a reload answers from the corpus the live build was made from.
            return Assistant(self.settings)

    def reload(self, reason: str) -> None:
        """Build a new answerer from the current live build in the background, then swap it in.

        The swap is one assignment: each request uses wholly the old answerer or wholly the new one, and those
        already running finish on the old one. On failure the old one is kept and the failure is logged.
        """
        threading.Thread(target=self.reload_now, args=(reason,), name="assistant-reload", daemon=True).start()

    def reload_now(self, reason: str, first: bool = False) -> bool:
        """:meth:`reload` in this thread; True once the new answerer is in use.

        Only the first load may build a missing or stale index in this process (as the first start always
        has); later, a live build that does not match the corpus and settings is left to the self-check, which
        rebuilds in a child process.
        """
        from assistant.pool import AnswerPool

        remote = bool(self.settings.chroma_url)
        with self._reload_lock:
            old = self._serving
            build = None
            try:
                if not first and not remote:
                    self._check_fresh()
                answerer = self.make_answerer()
                if not remote:  # a build read from an index server was checked against its digest as it was read
                    build = read_build(Path(str(answerer.index_info.get("path", ""))))
                    problem = "its build cannot be read" if build is None else verify_build(build)
                    if problem is not None:
                        if isinstance(answerer, AnswerPool):
                            answerer.close()
                        raise IndexNotReadyError(f"The new answerer's build failed its check: {problem}.")
            except AssistantError as error:
                log.error("Reload (%s) failed; %s: %s", reason, _keeping(old), error)
                self.reload_error = error
                if old is None:
                    self._load_error = error
                return False
            except Exception:  # a failed reload must leave the service answering as it was
                if self._closing:  # the server stopped while this was loading (say, its port was taken)
                    log.info("Loading (%s) stopped: the server is stopping", reason)
                    return False
                log.exception("Reload (%s) failed; %s", reason, _keeping(old))
                self.reload_error = IndexNotReadyError(LOAD_FAILED)
                if old is None:
                    self._load_error = self.reload_error
                return False
            name = answerer.index_info.get("build") if remote else None
            serving = Serving(answerer, build, None if name is None else str(name))
            self._serving = serving
            self._damaged = False
            self._load_error = self.reload_error = None
            workers = self.settings.workers
            where = f"{workers} answer process(es)" if workers else "answers computed in the server's process"
            log.info("Answering from build %s (%s; %s)", serving.build_id, reason, where)
        if old is not None:
            retiring, old = [old], None  # the thread alone holds it, so that it can let it go
            threading.Thread(target=_retire, args=(retiring, SLOT_WAIT_SECONDS * 2), daemon=True).start()
        return True

    def _check_fresh(self) -> None:
        corpus = load_corpus(self.settings.corpus_dir, self.settings.article_url)
        if fresh_build(self.settings.index_dir, expected_manifest(corpus, self.settings)) is None:
            raise IndexNotReadyError("The live build does not match the corpus and settings; it is being rebuilt.")

    def mark_damaged(self, problem: str) -> None:
        """Refuse questions with the maintenance reply from now until a rebuilt index is loaded."""
        if not self._damaged:
            log.error(
                "The live index is damaged (%s); questions get the maintenance reply until it is rebuilt", problem
            )
        self._damaged = True
        self._first_outcome.set()
        self.selfcheck.wake()

    def _recheck(self, serving: Serving) -> None:
        """A file of the serving build changed (or ``current`` moved): hash again before answering."""
        with self._check_lock:
            if serving.unchanged() or self._damaged:
                return  # another request has just checked
            verdict = check_live(self.settings.index_dir)
            if verdict.problem is not None or verdict.missing:
                self.mark_damaged(verdict.problem or "the index's current link is gone")
                return
            assert serving.build is not None
            problem = verify_build(serving.build)
            if problem is not None:
                self.mark_damaged(problem)
                return
            serving.seal = seal(serving.build, serving.names)
            if verdict.build is not None and verdict.build.path != serving.build.path:
                self.selfcheck.wake()  # another build went live: load it

    def current(self) -> Serving:
        """What answers now, or the reason nothing does (loading, failed, or the index damaged)."""
        serving = self._serving
        if serving is not None and not self._damaged and not serving.unchanged():
            self._recheck(serving)
        if self._damaged:
            raise IndexDamagedError(MAINTENANCE)
        if serving is not None:
            return serving
        if self._load_error is not None:
            raise self._load_error
        raise IndexNotReadyError("The assistant is still loading its index; please try again in a minute.")

    def assistant(self) -> Answerer:
        """The loaded assistant, or the reason there is none yet."""
        return self.current().answerer

    def ask(self, question: str, history: Sequence[dict[str, Any] | Message] = ()) -> Answer:
        """Answer one question within the concurrency limits; record it for feedback and in the question log."""
        return self.ask_with_build(question, history)[0]

    def ask_with_build(
        self, question: str, history: Sequence[dict[str, Any] | Message] = ()
    ) -> tuple[Answer, str | None]:
        """:meth:`ask`, with the id of the build that answered (None for an answerer given from outside)."""
        started = time.perf_counter()
        serving = self.current()
        with self.slots.take(), serving.use() as answerer:
            answer = answerer.ask(question, list(history))
        if answer.input_problem is None:
            self._record(question, answer, history, (time.perf_counter() - started) * 1000)
        return answer, serving.build_id

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

    def waiting_message(self) -> str | None:
        """Why questions are not answered yet (loading, failed to load, index damaged); None once they are."""
        if self._damaged:
            return MAINTENANCE
        if self._serving is None:
            return str(self._load_error) if self._load_error else LOADING
        return None

    def health(self) -> dict[str, Any]:
        """Readiness, counts, model, build and version for ``GET /api/health``."""
        serving, damaged = self._serving, self._damaged
        answering = serving is not None and not damaged
        chat = self.chat_status()
        ready = answering and chat == "ready"
        if damaged:
            status = "index damaged"
        elif answering:
            status = "ok" if ready else f"chat {chat}"
        else:
            status = "error" if self._load_error else "loading"
        info: dict[str, Any] = {
            "ready": ready,
            "status": status,
            "answering": answering,
            "chat": chat,
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
        if serving is not None:
            # Where the index lives on this machine is nobody's business outside it; its files' names neither.
            index_info = {k: v for k, v in serving.answerer.index_info.items() if k not in ("path", "files")}
            index_info["build"] = serving.build_id
            info["model"] = index_info.get("embedding_model")
            info["index"] = index_info
        if not answering:
            info["message"] = self.waiting_message()
        elif not ready:
            info["message"] = CHAT_FAILED if chat == "failed" else CHAT_STARTING
        if self.settings.chroma_url:
            # The loaded build keeps answering from memory while the index server is away: an outage of the
            # server only delays the next switch, so it is reported here but does not take this server out.
            info["index_server"] = dict(self.index_server_state)
        return info

    def close(self) -> None:
        """Stop the self-check and the answer processes, if any; flush and close the store."""
        from assistant.pool import AnswerPool

        self._closing = True
        self._first_outcome.set()
        self.selfcheck.stop()
        serving = self._serving
        if serving is not None and isinstance(serving.answerer, AnswerPool):
            serving.answerer.close()
        self.store.close()
