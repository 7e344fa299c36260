"""Answers computed in worker processes, so that one server uses every core.

Python computes one answer at a time per process. The server itself stays one process: Gradio keeps each chat
session's queue and state in that process's memory, so uvicorn's own workers (several processes on one socket)
would send a chat's requests to processes that do not know it. Instead, the one server hands each question to
one of N answer processes, each holding its own :class:`~assistant.assistant.Assistant` on the shared,
read-only build.

- The first process opens (or builds and fits) the index alone; the others start once it is ready, so nothing
  is built twice.
- A conversation stays with the process that gave its earlier answers (each process remembers what its
  answers quoted, for follow-ups); a new one goes to the least busy process.
- A process that dies (a fault in native code, the kernel's OOM killer) fails only the questions it was
  computing, with a clear "try again" error, and is started anew.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
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


class AnswerProcessLostError(AssistantError):
    """The process computing an answer stopped before it finished; it is being started again."""

    status_code = 503


def _start(settings: Settings) -> None:
    """In an answer process: open the index and fit or load the decisions."""
    global _assistant
    from assistant.allocator import HeapTrimmer, startup_heap

    with startup_heap():
        from assistant.assistant import Assistant

        _assistant = Assistant(settings)
    HeapTrimmer(settings.malloc_trim_seconds).start()  # a daemon thread: it ends with the process


def _index_info() -> dict[str, Any]:
    if _assistant is None:  # pragma: no cover - the initializer failed, and the pool reports that instead
        raise IndexNotReadyError("The answer process has no assistant.")
    return dict(_assistant.index_info)


def _ask(question: str, history: list[dict[str, Any]]) -> Answer:
    if _assistant is None:  # pragma: no cover - as above
        raise IndexNotReadyError("The answer process has no assistant.")
    return _assistant.ask(question, history)


class AnswerPool:
    """N answer processes behind the one ``ask`` an :class:`~assistant.assistant.Assistant` offers."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self._context = multiprocessing.get_context("spawn")  # no fork: the parent runs threads
        self._lock = threading.Lock()
        self._owner: OrderedDict[str, int] = OrderedDict()
        self._busy = [0] * processes
        self._executors: list[ProcessPoolExecutor] = []
        try:
            if settings.chroma_url:
                # The first process opens the index server's live build; the others (and any replacement) open
                # that same build, even if the live pointer moves meanwhile: one pool answers from one build.
                self._executors.append(self._spawn())
                info = self._executors[0].submit(_index_info).result()
                self.settings = settings.model_copy(update={"chroma_build": info["build"]})
            # All (the others, with Chroma) load at once, one per core. On a first start, the one that takes the
            # build lock builds or fits what is missing while the others wait on that lock, then open the result.
            self._executors += [self._spawn() for _ in range(processes - len(self._executors))]
            opened = [executor.submit(_index_info) for executor in self._executors]
            info = opened[0].result()
            for waiting in opened[1:]:
                waiting.result()
        except BrokenProcessPool:
            self.close()
            raise IndexNotReadyError(
                "An answer process could not open the index (see the log above). Run 'assistant index' to see "
                "why, then start the server again."
            ) from None
        except BaseException:
            self.close()
            raise
        self.index_info = info
        """What the answer processes opened (all open the same live build)."""

    def _spawn(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=1, mp_context=self._context, initializer=_start, initargs=(self.settings,)
        )

    def _route(self, history: Sequence[dict[str, Any] | Message]) -> int:
        with self._lock:
            for item in reversed(history):
                answer_id = item.answer_id if isinstance(item, Message) else item.get("answer_id")
                if isinstance(answer_id, str) and answer_id in self._owner:
                    number = self._owner[answer_id]
                    break
            else:
                number = min(range(len(self._busy)), key=lambda i: (self._busy[i], i))
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
            replacement.submit(_index_info)  # start it now, not on the next question
            self._executors[number] = replacement
            for answer_id in [a for a, n in self._owner.items() if n == number]:
                del self._owner[answer_id]
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the answer processes."""
        for executor in self._executors:
            executor.shutdown(wait=True, cancel_futures=True)
