"""The index in a real Chroma server (``chroma run``): published whole, read back whole, switched atomically.

The session's local build (tests/conftest.py) is published to a server of this module's own; a server with an
empty index folder of its own then answers from what it reads there, exactly as the local build answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from chroma_fixtures import ChromaServer, chroma_server
from server_fixtures import free_port

from assistant.assistant import Assistant, Engine, prepare, publish
from assistant.errors import IndexNotReadyError
from assistant.index import build_records, records_digest
from assistant.index_server import (
    COLLECTIONS,
    VECTOR_RTOL,
    IndexServer,
    IndexServerUnavailableError,
    NoPublishedBuildError,
    new_build_id,
)
from assistant.sentences import records_by_id
from assistant.settings import Settings

__all__ = ["chroma_server"]

pytestmark = [pytest.mark.slow]

QUESTIONS = [
    "Does Spotify allow stem extraction?",
    "What are the fair use factors?",
    "When should I talk to a lawyer?",
    "What does the WIPO treaty say about technological measures?",
]


def own_index_dir(folder: Path, settings: Settings) -> Path:
    """An empty index folder sharing only the embedding model's exported graph with the session's."""
    folder.mkdir(parents=True)
    (folder / "models").symlink_to(settings.index_dir / "models")
    return folder


@pytest.fixture(scope="module")
def served(settings: Settings, chroma_server: ChromaServer) -> Settings:
    return settings.model_copy(update={"chroma_url": chroma_server.url, "chroma_keep_builds": 2})


@pytest.fixture(scope="module")
def engine(settings: Settings, assistant: Assistant) -> Engine:
    """The session's build and its fitted decisions (the ``assistant`` fixture built and fitted them)."""
    return prepare(settings)


@pytest.fixture(scope="module")
def remote(
    served: Settings, engine: Engine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Assistant, str]]:
    version, new = publish(served, engine)
    assert new
    replica = served.model_copy(update={"index_dir": own_index_dir(tmp_path_factory.mktemp("replica") / "i", served)})
    yield Assistant(replica), version.build_id


def test_a_published_build_answers_exactly_as_the_local_one(
    remote: tuple[Assistant, str], assistant: Assistant, served: Settings, engine: Engine
) -> None:
    replica, build_id = remote
    assert replica.index_info["build"] == build_id
    assert replica.index_info["source_build"] == engine.build.path.name
    assert not (Path(replica.settings.index_dir) / "builds").exists()  # nothing was built where it serves
    assert len(replica.table.sentences) == len(assistant.table.sentences)
    for question in QUESTIONS:
        here, there = assistant.ask(question), replica.ask(question)
        assert there.answer == here.answer
        assert [c.model_dump() for c in there.citations] == [c.model_dump() for c in here.citations]
        assert there.disclaimer == here.disclaimer
    # Publishing the same build and decisions again changes nothing.
    again, new = publish(served, engine)
    assert (again.build_id, new) == (build_id, False)


def test_records_read_back_are_the_builds(remote: tuple[Assistant, str], served: Settings, engine: Engine) -> None:
    server = IndexServer(served)
    version = server.live()
    local, held = build_records(engine.build), server.records(version)
    assert records_digest(held) == version.manifest["records_sha256"]
    assert version.manifest["counts"] == {name: len(local[name]["ids"]) for name in COLLECTIONS}
    for name in COLLECTIONS:
        ours, theirs = records_by_id(local[name]), records_by_id(held[name])
        assert [row[:3] for row in theirs] == [row[:3] for row in ours]
        vectors = np.asarray([row[3] for row in ours], dtype=np.float32)
        served_vectors = np.asarray([row[3] for row in theirs], dtype=np.float32)
        np.testing.assert_allclose(served_vectors, vectors, rtol=VECTOR_RTOL, atol=0)


def test_readers_only_ever_see_complete_builds_while_new_ones_are_published(
    remote: tuple[Assistant, str], served: Settings, engine: Engine
) -> None:
    """Three more publications while a reader loads whatever is live, again and again; two builds are kept."""
    server = IndexServer(served)
    first = server.live().build_id
    loaded: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        reading = IndexServer(served)
        while not stop.is_set():
            version = reading.live()
            try:
                reading.records(version)
            except NoPublishedBuildError:
                # Allowed only for a build pruned since its pointer was read (two publications later).
                if version.build_id in reading.builds():
                    failures.append(f"{version.build_id} missing but present")
                continue
            except IndexNotReadyError as error:
                failures.append(f"{version.build_id}: {error}")
                continue
            loaded.append(version.build_id)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        records, files = build_records(engine.build), _files(served, engine)
        published = [server.publish(engine.build, records, files).build_id for _ in range(3)]
    finally:
        stop.set()
        thread.join(timeout=120)
    assert not failures
    assert set(loaded) <= {first, *published} and len(set(loaded)) >= 2, loaded
    assert server.live().build_id == published[-1]
    assert server.builds() == published[-2:]  # keep-last-2: the live build and the one before it


def test_an_abandoned_half_written_build_is_never_live_and_is_pruned(served: Settings, engine: Engine) -> None:
    server = IndexServer(served)
    live = server.live().build_id
    abandoned = new_build_id()
    records = build_records(engine.build)
    server._write_records(server.client(), server.name(abandoned, "sentences"), records["sentences"])
    assert server.live().build_id == live
    with pytest.raises(NoPublishedBuildError, match=r"is not \(or no longer\) in the index server"):
        server.version(abandoned)
    # The next two publications push it out of the newest two.
    for _ in range(2):
        server.publish(engine.build, records, _files(served, engine))
    assert abandoned not in server.builds()


def test_an_unreachable_server_is_a_clear_error(settings: Settings) -> None:
    down = settings.model_copy(update={"chroma_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(IndexServerUnavailableError, match="cannot be reached") as error:
        IndexServer(down).live()
    assert "Check that the Chroma server is running" in str(error.value)
    with pytest.raises(IndexNotReadyError, match="cannot be reached"):
        Assistant(down)
    wrong = settings.model_copy(update={"chroma_url": "ftp://127.0.0.1:1"})
    with pytest.raises(IndexNotReadyError, match="not a server address"):
        IndexServer(wrong).live()


def test_a_pinned_build_that_is_gone_says_so(served: Settings) -> None:
    pinned = served.model_copy(update={"chroma_build": "20000101t000000-00000000"})
    with pytest.raises(NoPublishedBuildError, match="ASSISTANT_CHROMA_BUILD"):
        IndexServer(pinned).version(pinned.chroma_build)


def _files(settings: Settings, engine: Engine) -> dict[str, bytes]:
    from assistant.bank import bank_dir
    from assistant.decisions.store import decisions_path
    from assistant.index_server import publishable_files

    return publishable_files(
        engine.corpus.directory, decisions_path(engine.build, engine.bank, settings), settings.bank_dir or bank_dir()
    )


def test_a_server_with_nothing_published_says_so(served: Settings) -> None:
    empty = served.model_copy(update={"chroma_prefix": "nothing_here"})
    with pytest.raises(NoPublishedBuildError, match="No index has been published") as error:
        IndexServer(empty).live()
    assert "Run 'assistant index' with the same ASSISTANT_CHROMA_URL" in str(error.value)
