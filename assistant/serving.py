"""An answerer bound to the verified index build it answers from, swapped in and out as one.

The service holds one :class:`Serving` at a time and replaces it in one assignment, so a request that took the
old one finishes on it, and the build id it reports is the build its answer came from.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from assistant.index import IndexBuild
from assistant.integrity import Seal, build_id, seal, sealed_files

if TYPE_CHECKING:
    from assistant.schemas import Answer, Message


class Answerer(Protocol):
    """What the service needs of whatever answers its questions.

    An :class:`~assistant.assistant.Assistant` in this process, or an :class:`~assistant.pool.AnswerPool` of several.
    """

    index_info: dict[str, Any]

    def ask(self, question: str, history: Sequence[Message | dict[str, Any]] = ()) -> Answer:
        """Answer one question in its conversation."""
        ...


class Serving:
    """One answerer and the verified build it answers from, swapped in whole: a request uses one or the other."""

    def __init__(self, answerer: Answerer, build: IndexBuild | None, name: str | None = None) -> None:
        """``build`` is the local build answered from; ``name`` names one read from an index server instead."""
        self.answerer = answerer
        self.build = build
        self.build_id = build_id(build) if build is not None else name
        self.names = sealed_files(build) if build is not None else []
        self.seal: Seal | None = seal(build, self.names) if build is not None else None
        self._users = 0
        self._idle = threading.Condition()

    @contextlib.contextmanager
    def use(self) -> Iterator[Answerer]:
        """The answerer, counted as in use until the block ends."""
        with self._idle:
            self._users += 1
        try:
            yield self.answerer
        finally:
            with self._idle:
                self._users -= 1
                self._idle.notify_all()

    def unchanged(self) -> bool:
        """True while none of the build's files (nor ``current``) changed identity, size or time since sealed."""
        return self.build is None or seal(self.build, self.names) == self.seal

    def retire(self, timeout: float) -> None:
        """Wait for the requests still using this answerer, then stop its processes (if it has any)."""
        from assistant.pool import AnswerPool

        with self._idle:
            self._idle.wait_for(lambda: self._users == 0, timeout)
        if isinstance(self.answerer, AnswerPool):
            self.answerer.close()
