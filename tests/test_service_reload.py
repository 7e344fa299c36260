"""AssistantService.reload: a new answerer is built aside and swapped in whole; a failed one changes nothing.

The answerers here implement the service's ``Answerer`` interface (``ask`` and ``index_info``) around the real
guard, so only the swap is under test; tests/test_index_switch.py does the same with the real assistant.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from assistant.corpus import Corpus, load_corpus
from assistant.errors import IndexNotReadyError
from assistant.guardrails import guard
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
    """The real service, building whatever ``next`` says on a reload."""

    next: Any = None

    def _make_answerer(self) -> Answerer:
        if isinstance(self.next, Exception):
            raise self.next
        return self.next  # type: ignore[no-any-return]


@pytest.fixture
def corpus() -> Corpus:
    return load_corpus(Settings(_env_file=None).corpus_dir)  # type: ignore[call-arg]


@pytest.fixture
def service(tmp_path: Path, corpus: Corpus) -> Iterator[Service]:
    settings = Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    svc = Service(settings, corpus, BuildAnswerer(corpus, "a"))  # type: ignore[arg-type]
    yield svc
    svc.close()


def test_a_reload_swaps_in_the_new_build_and_a_question_under_way_finishes_on_the_old(
    service: Service, corpus: Corpus
) -> None:
    hold = threading.Event()
    old = BuildAnswerer(corpus, "a", hold)
    service._assistant = old
    results: list[tuple[Answer, str | None]] = []
    asking = threading.Thread(target=lambda: results.append(service.ask_with_build("What is fair use?")))
    asking.start()
    assert old.started.wait(timeout=10)

    service.next = BuildAnswerer(corpus, "b")
    service.reload("build b is live")
    assert service.wait_until_ready(timeout=30)
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
    service.reload("build b is live")
    service.wait_until_ready(timeout=30)
    health = service.health()
    assert health["ready"] is True and health["status"] == "ok" and health["index"]["build"] == "a"
    assert service.ask_with_build("What is fair use?")[1] == "a"


def test_a_failed_first_load_is_a_clear_not_ready_error(tmp_path: Path, corpus: Corpus) -> None:
    settings = Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    service = Service(settings, corpus)
    service.next = IndexNotReadyError("The index server cannot be reached.")
    try:
        service.start_loading()
        assert service.wait_until_ready(timeout=30) is False
        assert service.health()["status"] == "error"
        assert service.health()["message"] == "The index server cannot be reached."
        with pytest.raises(IndexNotReadyError, match="cannot be reached"):
            service.ask_with_build("What is fair use?")
        service.next = BuildAnswerer(corpus, "a")
        service.reload("the index server is back")
        assert service.wait_until_ready(timeout=30) is True
        assert service.ask_with_build("What is fair use?")[1] == "a"
    finally:
        service.close()
