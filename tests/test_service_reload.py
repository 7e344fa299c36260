"""With an index server: a new answerer is built aside and swapped in whole, a failed one changes nothing, and
the self-check follows the server's live pointer.

The answerers here implement the service's ``Answerer`` interface (``ask`` and ``index_info``) around the real
guard, so only the swap is under test; tests/test_index_switch.py does the same with the real assistant.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assistant.corpus import Corpus, load_corpus
from assistant.errors import IndexNotReadyError
from assistant.guardrails import guard
from assistant.index_server import IndexServerUnavailableError
from assistant.schemas import Answer
from assistant.service import Answerer, AssistantService
from assistant.settings import Settings


class BuildAnswerer:
    """Answers with its build's name; ``hold`` keeps a question waiting until it is set."""

    def __init__(self, corpus: Corpus, build: str, hold: threading.Event | None = None) -> None:
        self.corpus = corpus
        self.index_info: dict[str, Any] = {"build": build, "embedding_model": "m"}
        self.hold = hold
        self.started = threading.Event()

    def ask(self, question: str, history: Sequence[Any] = ()) -> Answer:
        self.started.set()
        if self.hold is not None:
            assert self.hold.wait(timeout=30)
        answer = Answer(answer=f"from {self.index_info['build']}", answered=True, disclaimer=self.corpus.disclaimer)
        return guard(answer, [], self.corpus.disclaimer, [])


class Service(AssistantService):
    """The real service in index-server mode, building whatever ``next`` says on a (re)load."""

    next: Any = None

    def make_answerer(self) -> Answerer:
        if isinstance(self.next, Exception):
            raise self.next
        return self.next  # type: ignore[no-any-return]


class Pointer:
    """The index server's ``version`` (the only call the self-check makes of it): the live build's id."""

    def __init__(self, live: str | Exception) -> None:
        self.live = live
        self.reads = 0

    def version(self, build_id: str | None = None) -> SimpleNamespace:
        self.reads += 1
        if isinstance(self.live, Exception):
            raise self.live
        return SimpleNamespace(build_id=build_id or self.live)


def remote_settings(tmp_path: Path) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        index_dir=tmp_path / "index",
        data_dir=tmp_path / "data",
        chroma_url="http://127.0.0.1:9",  # never reached: the pointer is replaced below
        chroma_poll_seconds=0.05,
    )


@pytest.fixture
def corpus() -> Corpus:
    return load_corpus(Settings(_env_file=None).corpus_dir)  # type: ignore[call-arg]


@pytest.fixture
def service(tmp_path: Path, corpus: Corpus) -> Iterator[Service]:
    svc = Service(remote_settings(tmp_path), corpus)
    svc.next = BuildAnswerer(corpus, "a")
    assert svc.reload_now("start", first=True)
    yield svc
    svc.close()


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_reload_swaps_in_the_new_build_and_a_question_under_way_finishes_on_the_old(
    service: Service, corpus: Corpus
) -> None:
    hold = threading.Event()
    service.next = BuildAnswerer(corpus, "a", hold)
    assert service.reload_now("start again")
    old = service.next
    results: list[tuple[Answer, str | None]] = []
    asking = threading.Thread(target=lambda: results.append(service.ask_with_build("What is fair use?")))
    asking.start()
    assert old.started.wait(timeout=10)

    service.next = BuildAnswerer(corpus, "b")
    assert service.reload_now("build b is live")
    assert service.health()["index"]["build"] == "b"
    answer, build = service.ask_with_build("What is fair use?")
    assert (build, answer.answer.startswith("from b")) == ("b", True)

    hold.set()
    asking.join(timeout=30)
    ((earlier, earlier_build),) = results
    assert earlier_build == "a" and earlier.answer.startswith("from a")  # wholly from the build it started on
    assert earlier.disclaimer == corpus.disclaimer


def test_a_failed_reload_keeps_the_old_answerer(service: Service) -> None:
    service.next = IndexNotReadyError("Build b in the index server is incomplete or damaged.")
    assert not service.reload_now("build b is live")
    health = service.health()
    assert health["ready"] is True and health["status"] == "ok" and health["index"]["build"] == "a"
    assert service.ask_with_build("What is fair use?")[1] == "a"


def test_the_self_check_follows_the_live_pointer_and_skips_a_build_that_failed(
    service: Service, corpus: Corpus
) -> None:
    pointer = Pointer("a")
    service.selfcheck._index_server = pointer  # type: ignore[assignment]
    service.start_loading()  # already answering: only the self-check starts
    service.selfcheck.start()
    assert wait_for(lambda: pointer.reads >= 2)
    assert service.health()["index_server"] == {"reachable": True, "live_build": "a"}

    service.next = IndexNotReadyError("Build b in the index server is incomplete or damaged.")
    pointer.live = "b"
    assert wait_for(lambda: service.failed_build == "b")
    service.next = BuildAnswerer(corpus, "b")  # not tried again while b is the live build
    reads = pointer.reads
    assert wait_for(lambda: pointer.reads >= reads + 3)
    assert service.ask_with_build("What is fair use?")[1] == "a"

    pointer.live = "c"
    service.next = BuildAnswerer(corpus, "c")
    assert wait_for(lambda: service.health()["index"]["build"] == "c")
    assert service.ask_with_build("What is fair use?")[1] == "c"

    pointer.live = IndexServerUnavailableError("The index server cannot be reached.")
    assert wait_for(lambda: service.health()["index_server"].get("reachable") is False)
    assert service.health()["status"] == "ok"  # the loaded build keeps answering from memory
    assert service.ask_with_build("What is fair use?")[1] == "c"


def test_a_failed_first_load_is_a_clear_not_ready_error_until_a_poll_loads(tmp_path: Path, corpus: Corpus) -> None:
    service = Service(remote_settings(tmp_path), corpus)
    pointer = Pointer(IndexServerUnavailableError("The index server cannot be reached."))
    service.selfcheck._index_server = pointer  # type: ignore[assignment]
    service.next = IndexServerUnavailableError("The index server cannot be reached.")
    try:
        service.start_loading()
        assert service.wait_until_ready(timeout=30) is False
        health = service.health()
        assert health["status"] == "error" and health["message"] == "The index server cannot be reached."
        assert health["index_server"]["reachable"] is False
        with pytest.raises(IndexNotReadyError, match="cannot be reached"):
            service.ask_with_build("What is fair use?")
        pointer.live = "a"
        service.next = BuildAnswerer(corpus, "a")
        assert wait_for(lambda: service.ready)
        assert service.ask_with_build("What is fair use?")[1] == "a"
    finally:
        service.close()
