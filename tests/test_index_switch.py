"""A real server process serving from a real Chroma server switches builds under load, and survives its outage.

Build A is the session's build, published by ``assistant index``. Build B is made from a copy of the corpus with
one word of a platform-terms sentence changed (and the same sentence in a copy of the question bank, whose gold
spans must be verbatim slices of the corpus; the bank is published with the build), so an answer that quotes the
new wording can only have come from B. While
several clients keep asking, B is published; the server must answer every question (no error), each answer
naming its build in ``X-Index-Build`` and quoting only what that build holds. Then the Chroma server stops and
starts again: the loaded build keeps answering, a server started meanwhile says why it cannot, and both recover.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from chroma_fixtures import ChromaServer, chroma_server
from server_fixtures import PROJECT_ROOT, ServerProcess, free_port, server_env

from assistant.bank import bank_dir, bank_files
from assistant.corpus import Corpus
from assistant.index_server import COLLECTIONS, IndexServer
from assistant.settings import Settings

__all__ = ["chroma_server"]

pytestmark = [pytest.mark.slow]

QUESTIONS = [
    "Does Spotify allow stem extraction?",
    "Does Spotify allow extracting stems from its songs?",
    "What are the fair use factors?",
    "When should I talk to a lawyer?",
]
OLD = "streaming platforms generally prohibit using their content"
NEW = "streaming platforms generally forbid using their content"
"""One sentence of the article in build A and in build B; answers about Spotify's terms quote it."""
CLIENTS = 3
AFTER_SWITCH_SECONDS = 10.0
POLL_SECONDS = "1"


def own_index_dir(folder: Path, settings: Settings) -> Path:
    """An empty index folder sharing only the embedding model's exported graph (and vector cache) with the session's."""
    folder.mkdir(parents=True)
    (folder / "models").symlink_to(settings.index_dir / "models")
    return folder


def run_index(env: dict[str, str], log: Path, timeout: float = 900) -> None:
    with log.open("ab") as out:
        done = subprocess.run(
            [sys.executable, "-m", "assistant.cli", "index"],
            env=env,
            cwd=log.parent,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    assert done.returncode == 0, log.read_text()[-3000:]


def corpus_b(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    article = target / "article.md"
    text = article.read_text(encoding="utf-8")
    assert text.count(OLD) == 1
    article.write_text(text.replace(OLD, NEW), encoding="utf-8")
    return target


def bank_b(target: Path) -> Path:
    shutil.copytree(bank_dir(), target)
    labelled = [path for path in bank_files(target) if OLD in path.read_text(encoding="utf-8")]
    assert labelled, "the bank labels the changed sentence, so build B is fitted on an edited bank"
    for path in labelled:
        path.write_text(path.read_text(encoding="utf-8").replace(OLD, NEW), encoding="utf-8")
    return target


@dataclass
class Cluster:
    chroma: ChromaServer
    server: ServerProcess
    build_a: str
    tmp: Path
    settings: Settings
    others: list[ServerProcess] = field(default_factory=list)


@pytest.fixture(scope="module")
def cluster(
    settings: Settings, assistant: Any, chroma_server: ChromaServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Build A published by ``assistant index`` (the session's build), and one server loading it from Chroma."""
    tmp = tmp_path_factory.mktemp("switch")
    builder = server_env(settings.index_dir, tmp / "data", free_port(), ASSISTANT_CHROMA_URL=chroma_server.url)
    run_index(builder, tmp / "index-a.log")
    build_a = IndexServer(settings.model_copy(update={"chroma_url": chroma_server.url})).live().build_id
    port = free_port()
    env = server_env(
        own_index_dir(tmp / "replica-index", settings),
        tmp / "replica-data",
        port,
        ASSISTANT_CHROMA_URL=chroma_server.url,
        ASSISTANT_CHROMA_POLL_SECONDS=POLL_SECONDS,
        ASSISTANT_RATE_LIMIT_PER_MINUTE="100000",
    )
    server = ServerProcess(port=port, env=env, log_path=tmp / "replica.log").start()
    cluster = Cluster(chroma=chroma_server, server=server, build_a=build_a, tmp=tmp, settings=settings)
    try:
        server.wait_ready()
        yield cluster
    finally:
        for process in [server, *cluster.others]:
            process.stop(signal.SIGKILL)


def health(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.url}/api/health", timeout=10)


@dataclass
class Held:
    """One build's texts: its chunks, paragraphs and headings, and its sentences (longest first)."""

    texts: list[str]
    sentences: list[str]

    @classmethod
    def of(cls, records: dict[str, dict[str, Any]]) -> Held:
        texts = [text for name in COLLECTIONS for text in records[name]["documents"]]
        return cls(texts, sorted(records["sentences"]["documents"], key=len, reverse=True))

    def holds(self, quote: str) -> bool:
        """The quote is one of the build's texts, or consecutive sentences of it (a quote may span a chunk's end)."""
        if any(quote in text for text in self.texts):
            return True
        rest = quote
        for sentence in self.sentences:
            if sentence in rest:
                rest = rest.replace(sentence, " ")
        return not rest.strip()


def test_a_server_loads_the_live_build_from_chroma(cluster: Cluster, corpus: Corpus) -> None:
    info = health(cluster.server).json()
    assert info["index"]["build"] == cluster.build_a
    assert info["index_server"] == {"reachable": True, "live_build": cluster.build_a}
    response = httpx.post(f"{cluster.server.url}/api/ask", json={"question": QUESTIONS[0]}, timeout=60)
    assert response.status_code == 200 and response.headers["x-index-build"] == cluster.build_a
    assert response.json()["answered"] is True and response.json()["disclaimer"] == corpus.disclaimer
    assert not (cluster.tmp / "replica-index" / "builds").exists()  # it built nothing: all came from Chroma


def test_an_index_switch_under_load_loses_nothing_and_never_mixes_builds(cluster: Cluster, corpus: Corpus) -> None:
    # Build B is built and fitted first (no server involved), then published while the clients ask.
    builder_dir = own_index_dir(cluster.tmp / "builder-b", cluster.settings)
    local = server_env(builder_dir, cluster.tmp / "data", free_port())
    local["ASSISTANT_CORPUS_DIR"] = str(corpus_b(PROJECT_ROOT / "corpus", cluster.tmp / "corpus-b"))
    local["ASSISTANT_BANK_DIR"] = str(bank_b(cluster.tmp / "bank-b"))
    run_index(local, cluster.tmp / "index-b-local.log")

    results: list[tuple[float, int, str | None, dict[str, Any]]] = []
    errors: list[str] = []
    stop = threading.Event()

    def client(number: int) -> None:
        with httpx.Client(base_url=cluster.server.url, timeout=120) as http:
            turn = number
            while not stop.is_set():
                question = QUESTIONS[turn % len(QUESTIONS)]
                turn += 1
                sent = time.monotonic()
                try:
                    response = http.post("/api/ask", json={"question": question})
                except httpx.HTTPError as error:
                    errors.append(f"{question}: {type(error).__name__} {error}")
                    continue
                body = response.json() if response.headers.get("content-type") == "application/json" else {}
                results.append((sent, response.status_code, response.headers.get("x-index-build"), body))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        run_index({**local, "ASSISTANT_CHROMA_URL": cluster.chroma.url}, cluster.tmp / "index-b-publish.log")
        build_b = IndexServer(cluster.settings.model_copy(update={"chroma_url": cluster.chroma.url})).live().build_id
        deadline = time.monotonic() + 120
        while health(cluster.server).json()["index"]["build"] != build_b:
            assert time.monotonic() < deadline, "the server did not switch to build B within 120 s"
            time.sleep(0.5)
        switched = time.monotonic()
        time.sleep(AFTER_SWITCH_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=180)
    print(
        f"\nswitch under load: {len(results)} answers in {time.monotonic() - started:.0f} s "
        f"({CLIENTS} clients), switched {switched - started:.0f} s in"
    )

    assert not errors
    assert [status for _, status, _, _ in results if status != 200] == []
    builds = [build for _, _, build, _ in results]
    assert set(builds) == {cluster.build_a, build_b}, set(builds)
    server = IndexServer(cluster.settings.model_copy(update={"chroma_url": cluster.chroma.url}))
    held = {build: Held.of(server.records(server.version(build))) for build in (cluster.build_a, build_b)}
    quoted_added = {cluster.build_a: 0, build_b: 0}
    for _, _, build, body in results:
        assert body["disclaimer"] == corpus.disclaimer
        assert build is not None
        for citation in body["citations"]:
            assert held[build].holds(citation["quote"]), (build, citation["quote"])
            quoted_added[build] += NEW in citation["quote"]
    # The check has teeth: B's answers quote the sentence A lacks.
    assert quoted_added[cluster.build_a] == 0 and quoted_added[build_b] > 0, quoted_added
    # Once the server reported build B, every question asked afterwards was answered from B.
    late = [build for sent, _, build, _ in results if sent > switched]
    assert late and set(late) == {build_b}


def test_a_chroma_outage_keeps_the_loaded_build_and_recovers(cluster: Cluster, corpus: Corpus) -> None:
    serving = health(cluster.server).json()["index"]["build"]
    cluster.chroma.stop()
    try:
        deadline = time.monotonic() + 60
        while health(cluster.server).json()["index_server"]["reachable"] is not False:
            assert time.monotonic() < deadline, "the outage was not noticed"
            time.sleep(0.5)
        during = health(cluster.server)
        assert during.status_code == 200 and "cannot be reached" in during.json()["index_server"]["message"]
        answer = httpx.post(f"{cluster.server.url}/api/ask", json={"question": QUESTIONS[2]}, timeout=60)
        assert answer.status_code == 200 and answer.headers["x-index-build"] == serving

        # A server started during the outage has nothing to answer from, and says so.
        port = free_port()
        env = {**cluster.server.env, "ASSISTANT_PORT": str(port)}
        env["ASSISTANT_INDEX_DIR"] = str(own_index_dir(cluster.tmp / "late-index", cluster.settings))
        late = ServerProcess(port=port, env=env, log_path=cluster.tmp / "late.log").start()
        cluster.others.append(late)
        deadline = time.monotonic() + 180
        while True:
            try:
                response = health(late)
            except httpx.HTTPError:
                response = None
            if response is not None and response.json().get("status") == "error":
                break
            assert time.monotonic() < deadline, "the late server never reported the outage"
            time.sleep(0.5)
        assert response.status_code == 503
        assert "cannot be reached" in response.json()["message"]
        assert response.json()["disclaimer"] == corpus.disclaimer
        refused = httpx.post(f"{late.url}/api/ask", json={"question": QUESTIONS[0]}, timeout=30)
        assert refused.status_code == 503 and refused.json()["error"] == "index_server_unavailable"
        assert "cannot be reached" in refused.json()["message"]
        assert refused.json()["disclaimer"] == corpus.disclaimer
    finally:
        cluster.chroma.start()

    deadline = time.monotonic() + 180
    while health(late).status_code != 200:
        assert time.monotonic() < deadline, f"the late server did not recover; see {late.log_path}"
        time.sleep(0.5)
    assert health(late).json()["index"]["build"] == serving
    assert health(cluster.server).json()["index_server"] == {"reachable": True, "live_build": serving}
    after = httpx.post(f"{late.url}/api/ask", json={"question": QUESTIONS[0]}, timeout=60)
    assert after.status_code == 200 and after.headers["x-index-build"] == serving
