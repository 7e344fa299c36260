"""Answers computed in worker processes, so that one server uses every core.

Python computes one answer at a time per process. The server itself stays one process: Gradio keeps each chat
session's queue and state in that process's memory, so uvicorn's own workers (several processes on one socket)
would send a chat's requests to processes that do not know it. Instead, the one server hands each question to
one of N answer processes, each holding its own :class:`~assistant.assistant.Assistant` on the shared,
read-only build.

- The first process opens (or builds and fits) the index alone, so nothing is built twice, and the pool answers
  as soon as it has: with every process loading at once, on as many cores, the first answer waited for all of
  them. The others start then, and take questions once each has opened the same build.
- A conversation stays with the process that gave its earlier answers (each process remembers what its
  answers quoted, for follow-ups); a new one goes to the least busy process that has opened the build.
- A process that dies (a fault in native code, the kernel's OOM killer) fails only the questions it was
  computing, with a clear "try again" error, and is started anew.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from assistant.errors import AssistantError, IndexNotReadyError
from assistant.schemas import Answer, Message

if TYPE_CHECKING:
    from assistant.assistant import Assistant
    from assistant.settings import Settings

log = logging.getLogger("assistant.pool")

_assistant: Assistant | None = None
"""The answer process's own assistant (set by :func:`_start`)."""

_failure: AssistantError | None = None
"""Why the answer process could not open the build (set by :func:`_start`), raised to every call it gets.

An initializer's own exception would only break the pool, and the server would learn that a process stopped but
not why; raised from a call, the error reaches the server whole (the index server cannot be reached, the build is
damaged, ...), as it would with the assistant in the server's own process.
"""


class AnswerProcessLostError(AssistantError):
    """The process computing an answer stopped before it finished; it is being started again."""

    status_code = 503


def _end_with(server: int) -> None:
    """In an answer process: exit as soon as the server process ``server`` has ended, however it ended.

    A server killed outright (SIGKILL, the OOM killer) cannot stop its answer processes, and they would hold
    their memory until someone found them: each waits on a process descriptor of the server (Linux's
    ``pidfd_open``) in a daemon thread. Where there is none, nothing watches.
    """
    import select

    try:
        descriptor = os.pidfd_open(server)
    except ProcessLookupError:
        os._exit(0)  # already gone
    except (AttributeError, OSError):  # not Linux 5.3 or later
        return
    if os.getppid() != server:  # it ended, and its number was reused, before the descriptor was opened
        os._exit(0)

    def wait() -> None:
        select.select([descriptor], [], [])
        os._exit(0)

    threading.Thread(target=wait, name="server-watch", daemon=True).start()


def _start(settings: Settings, server: int) -> None:
    """In an answer process: end with the server process, open the index, and fit or load the decisions."""
    global _assistant, _failure
    from assistant.allocator import HeapTrimmer, startup_heap

    _end_with(server)
    try:
        with startup_heap():
            from assistant.assistant import Assistant

            _assistant = Assistant(settings)
    except AssistantError as error:
        _failure = error
        return
    HeapTrimmer(settings.malloc_trim_seconds).start()  # a daemon thread: it ends with the process


def _opened() -> Assistant:
    """The process's assistant, or the error that kept it from opening the build."""
    if _failure is not None:
        raise _failure.with_traceback(None)  # the same error each call, without the tracebacks of the last
    if _assistant is None:  # pragma: no cover - the initializer raised something else, which broke the pool
        raise IndexNotReadyError("The answer process has no assistant.")
    return _assistant


def _index_info() -> dict[str, Any]:
    return dict(_opened().index_info)


def _ask(question: str, history: list[dict[str, Any]]) -> Answer:
    return _opened().ask(question, history)


_early: tuple[Settings, ProcessPoolExecutor, Future[dict[str, Any]]] | None = None
"""The first answer process, started by :func:`start_early` for the pool these settings will make."""


def start_early(settings: Settings) -> None:
    """Start the first answer process of the pool ``settings`` ask for, now.

    :func:`assistant.launch.serve` (``assistant serve``, ``python app.py``) calls this before it imports the web
    stack and builds the app (about a second of one core), so the first process imports the engine and opens the
    build on the other core meanwhile. The pool takes it over when the server makes it with the same settings
    (:func:`discard_early` stops it otherwise).
    """
    global _early
    discard_early()
    executor = _executor(settings)
    _early = (settings, executor, executor.submit(_index_info))


def discard_early() -> None:
    """Stop the process :func:`start_early` started, unless a pool has taken it."""
    global _early
    early, _early = _early, None
    if early is not None:
        early[1].shutdown(wait=False, cancel_futures=True)


def _take_early(settings: Settings) -> tuple[ProcessPoolExecutor, Future[dict[str, Any]]] | None:
    """The process :func:`start_early` started for these settings; one started for others is stopped."""
    global _early
    if _early is None or _early[0] != settings:
        discard_early()
        return None
    _, executor, opening = _early
    _early = None
    return executor, opening


def _executor(settings: Settings) -> ProcessPoolExecutor:
    """One answer process (spawned, not forked: the parent runs threads) that opens the build as it starts."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start,
        initargs=(settings, os.getpid()),
    )


class AnswerPool:
    """N answer processes behind the one ``ask`` an :class:`~assistant.assistant.Assistant` offers."""

    def __init__(self, settings: Settings, processes: int) -> None:
        """Start the first process and wait until it has opened the build; the others open theirs meanwhile."""
        self.settings = settings
        self._lock = threading.Lock()
        self._owner: OrderedDict[str, int] = OrderedDict()
        self._busy = [0] * processes
        self._open = [False] * processes
        self._closing = False
        self._executors: list[ProcessPoolExecutor] = []
        try:
            # The first process opens (or, on a first start, builds and fits) the live build alone. With an index
            # server, the others then open the build it opened, even if the live pointer moves meanwhile: one pool
            # answers from one build.
            early = _take_early(settings)
            if early is not None:
                log.info("Answer process 1 was started before the server; waiting for it to open the build")
            executor, opening = early or (self._spawn(), None)
            self._executors.append(executor)
            info = (opening or executor.submit(_index_info)).result()
        except BrokenProcessPool:
            self.close()
            raise IndexNotReadyError(
                "An answer process could not open the index (see the log above). Run 'assistant index' to see "
                "why, then start the server again."
            ) from None
        except BaseException:
            self.close()
            raise
        if settings.chroma_url:
            self.settings = settings.model_copy(update={"chroma_build": info["build"]})
        self._open[0] = True
        self.index_info = info
        """What the answer processes opened (all open the same live build)."""
        for number in range(1, processes):
            self._executors.append(self._spawn())
            self._watch_opening(number, self._executors[number])

    @property
    def open_processes(self) -> int:
        """How many answer processes have opened the build and take questions."""
        with self._lock:
            return sum(self._open)

    def _watch_opening(self, number: int, executor: ProcessPoolExecutor) -> None:
        """Start process ``number`` opening the build; it takes new conversations once it has."""

        def opened(future: Future[dict[str, Any]]) -> None:
            error = None if future.cancelled() else future.exception()
            failed = future.cancelled() or error is not None
            with self._lock:
                if self._closing or self._executors[number] is not executor:
                    return  # closed or replaced meanwhile
                self._open[number] = not failed
            if isinstance(error, AssistantError):
                log.error("Answer process %d could not open the build (%s); the others answer", number + 1, error)
            elif failed:
                log.error("Answer process %d stopped before it had opened the build; the others answer", number + 1)
            else:
                log.info("Answer process %d is answering", number + 1)

        executor.submit(_index_info).add_done_callback(opened)

    def _spawn(self) -> ProcessPoolExecutor:
        return _executor(self.settings)

    def _route(self, history: Sequence[dict[str, Any] | Message]) -> int:
        with self._lock:
            for item in reversed(history):
                answer_id = item.answer_id if isinstance(item, Message) else item.get("answer_id")
                if isinstance(answer_id, str) and answer_id in self._owner:
                    number = self._owner[answer_id]
                    break
            else:
                # A process still opening the build would keep a question waiting for it; if none has opened
                # (all were lost at once), the question waits for the first to open.
                ready = [i for i, opened in enumerate(self._open) if opened] or range(len(self._busy))
                number = min(ready, key=lambda i: (self._busy[i], i))
            self._busy[number] += 1
            return number

    def ask(self, question: str, history: Sequence[dict[str, Any] | Message] = ()) -> Answer:
        """Answer in one of the processes (the conversation's own, when it has one)."""
        turns = [m.model_dump(mode="json") if isinstance(m, Message) else dict(m) for m in history]
        number = self._route(history)
        executor = self._executors[number]
        try:
            answer = executor.submit(_ask, question, turns).result()
        except BrokenProcessPool:
            self._replace(number, executor)
            raise AnswerProcessLostError(
                "The server lost the process computing your answer and is starting it again. Please ask again "
                "in a few seconds."
            ) from None
        finally:
            with self._lock:
                self._busy[number] -= 1
        with self._lock:
            self._owner[answer.answer_id] = number
            while len(self._owner) > max(self.settings.answers_remembered, 1):
                self._owner.popitem(last=False)
        return answer

    def _replace(self, number: int, broken: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._executors[number] is not broken:
                return  # another request already replaced it
            log.error("Answer process %d stopped; starting a new one", number + 1)
            replacement = self._spawn()
            self._executors[number] = replacement
            self._open[number] = False
            for answer_id in [a for a, n in self._owner.items() if n == number]:
                del self._owner[answer_id]
        self._watch_opening(number, replacement)  # started now, not on the next question
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the answer processes."""
        with self._lock:
            self._closing = True
        for executor in self._executors:
            executor.shutdown(wait=True, cancel_futures=True)
