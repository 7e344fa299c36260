"""The persisted Chroma index: build, check freshness, swap in atomically.

Layout under ``index_dir``::

    builds/<id>/        one complete Chroma build plus its manifest.json
    current -> builds/<id>   symlink to the live build, replaced atomically
    .build.lock         held (flock) by the one process that is building

A build is written to a fresh folder, checked, and only then made live by
replacing the ``current`` symlink in one ``rename``; a build killed halfway
leaves the previous live index untouched. Builds whose manifest no longer
matches the corpus, model, chunker or chromadb version are rebuilt. The
manifest records the SHA-256 of every file the build wrote
(:func:`verify_files` checks them); the decisions fitted later keep their own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from assistant.chunking import (
    CHUNKER_VERSION,
    chunk_corpus,
    embedding_text,
    paragraph_documents,
    sentence_documents,
)
from assistant.corpus import Corpus
from assistant.errors import IndexBusyError, IndexNotReadyError
from assistant.sentences import SentenceTable, records_by_id
from assistant.settings import Settings

if TYPE_CHECKING:
    from langchain_chroma import Chroma

COLLECTION = "corpus"
SENTENCES = "sentences"
PARAGRAPHS = "paragraphs"
HEADINGS = "headings"
COLLECTIONS = (COLLECTION, SENTENCES, PARAGRAPHS, HEADINGS)
SNAPSHOT = "records.npz"
"""The build's serving snapshot: every record of the collections as Chroma returns them, with their vectors."""
MANIFEST = "manifest.json"
FITTED = ("decisions", "support")
"""Folders of models fitted against a build after it went live; each keeps its own checksum, not the manifest."""
EMBED_SLICE = 256
"""Texts handed to the model per call while building: large enough for length-sorted batches to pad
little, small enough for the progress bar to move every few seconds."""
Progress = Callable[[int, int], None]
"""Called as ``progress(done, total)`` while chunks are embedded."""


def model_id(embedding_model: str) -> str:
    """A location-independent name for the embedding model (a venv path differs per machine)."""
    path = Path(embedding_model)
    return f"{path.parent.name}/{path.name}" if path.is_dir() else embedding_model


def expected_manifest(corpus: Corpus, settings: Settings) -> dict[str, Any]:
    """What a build made from this corpus and these settings records about itself."""
    return {
        "corpus_fingerprint": corpus.fingerprint,
        "embedding_model": model_id(settings.embedding_model),
        "chunker_version": CHUNKER_VERSION,
        "chunk_chars": settings.chunk_chars,
        "chromadb_version": metadata.version("chromadb"),
    }


def _matches(manifest: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(manifest.get(key) == value for key, value in expected.items())


@dataclass(frozen=True)
class IndexBuild:
    """A complete build on disk."""

    path: Path
    manifest: dict[str, Any]


def live_build(index_dir: Path) -> IndexBuild | None:
    """The build ``current`` points at, if it is complete."""
    current = index_dir / "current"
    try:
        target = current.resolve(strict=True)
        manifest = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return IndexBuild(path=target, manifest=manifest)


def fresh_build(index_dir: Path, expected: dict[str, Any]) -> IndexBuild | None:
    """The live build if it matches ``expected``; None when missing or stale."""
    build = live_build(index_dir)
    return build if build is not None and _matches(build.manifest, expected) else None


@contextlib.contextmanager
def build_lock(index_dir: Path, timeout: float, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the build lock; wait up to ``timeout`` seconds for another builder."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with (index_dir / ".build.lock").open("a+") as handle:
        deadline = time.monotonic() + timeout
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise IndexBusyError(
                        f"Another process is building the index in {index_dir} and did not finish within "
                        f"{timeout:.0f} s. Wait for it to finish, or stop it and run 'assistant index' again."
                    ) from None
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _chroma_client(path: Path) -> Any:
    # Imported here: a serving process reads the build's snapshot and never loads Chroma's native code.
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))


def heading_documents(corpus: Corpus) -> list[Document]:
    """Every section heading, with its source's title: what a question naming a section is compared with."""
    return [
        Document(
            id=f"{section.source.id}/{section.index:03d}",
            page_content=f"{section.source.title} — {section.heading}",
            metadata={"source_id": section.source.id, "section": section.heading, "kind": "heading"},
        )
        for section in corpus.sections
    ]


def embed_distinct(texts: list[str], embeddings: Embeddings, progress: Progress) -> dict[str, list[float]]:
    """Each distinct text embedded once, longest first, so that every batch pads to texts of its own length.

    A one-sentence paragraph is the same text as its sentence, and many statute paragraphs are one sentence:
    about a third of the texts the index stores are repeats.
    """
    distinct = sorted(set(texts), key=lambda text: (-len(text), text))
    vectors: dict[str, list[float]] = {}
    progress(0, len(distinct))
    for offset in range(0, len(distinct), EMBED_SLICE):
        part = distinct[offset : offset + EMBED_SLICE]
        vectors.update(zip(part, embeddings.embed_documents(part), strict=True))
        progress(len(vectors), len(distinct))
    return vectors


def _write_chroma(
    path: Path, corpus: Corpus, chunks: list[Document], embeddings: Embeddings, progress: Progress
) -> None:
    # Written through chromadb directly rather than Chroma.add_documents: each chunk is
    # embedded with its section heading for context, while the stored document stays
    # the exact slice of the corpus file that quotes are checked against.
    client = _chroma_client(path)
    sentences = sentence_documents(corpus, chunks)
    paragraphs = paragraph_documents(corpus, sentences)
    headings = heading_documents(corpus)
    collections = ((COLLECTION, chunks), (SENTENCES, sentences), (PARAGRAPHS, paragraphs), (HEADINGS, headings))
    vectors = embed_distinct(
        [embedding_text(doc) for _, documents in collections for doc in documents], embeddings, progress
    )
    for name, documents in collections:
        # A wide search beam makes the approximate search as good as exact on a corpus this size, so a
        # question gets the same passages from a build just written as from one reopened later.
        collection = client.create_collection(
            name, configuration={"hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 200}}
        )
        batch = client.get_max_batch_size()
        for offset in range(0, len(documents), batch):
            part = documents[offset : offset + batch]
            collection.add(
                ids=[str(doc.id) for doc in part],
                documents=[doc.page_content for doc in part],
                metadatas=[doc.metadata for doc in part],
                embeddings=[vectors[embedding_text(doc)] for doc in part],  # type: ignore[misc]
            )
        if collection.count() != len(documents):
            raise IndexNotReadyError(
                f"The new index holds {collection.count()} of {len(documents)} {name}; it was not made live. "
                "Run 'assistant index' again."
            )


def sha256_file(path: Path) -> str:
    """The SHA-256 of one file, read in blocks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_checksums(path: Path) -> dict[str, str]:
    """The SHA-256 of every file of the build at ``path`` (relative POSIX path → digest).

    Everything the build wrote before going live: Chroma's database and vector segments and the serving snapshot.
    The manifest (which holds these) and the fitted models (written later, each with its own checksum) are left out.
    """
    found: dict[str, str] = {}
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and relative.parts[0] not in FITTED and relative.as_posix() != MANIFEST:
            found[relative.as_posix()] = sha256_file(file)
    return found


def verify_files(build: IndexBuild) -> str | None:
    """What is wrong with the build's files against the checksums its manifest records; None when intact.

    Every file the manifest lists is read and hashed (about 35 MB for this corpus: a tenth of a second), the
    Chroma files included although serving reads only the snapshot, because a rebuild or a comparison that opens
    Chroma must not meet a damaged database either. A build from before per-file checksums has only its
    snapshot's. The returned text names files and is for the log, not for users.
    """
    recorded: dict[str, str] = dict(build.manifest.get("files") or {})
    if not recorded and "snapshot_sha256" in build.manifest:
        recorded = {SNAPSHOT: str(build.manifest["snapshot_sha256"])}
    if not recorded:
        return "the manifest records no checksums"
    if recorded.get(SNAPSHOT, build.manifest.get("snapshot_sha256")) != build.manifest.get("snapshot_sha256"):
        return "the manifest's two checksums of the snapshot differ"
    for name, digest in recorded.items():
        try:
            actual = sha256_file(build.path / name)
        except OSError as error:
            return f"{name} cannot be read ({error.strerror})"
        if actual != digest:
            return f"{name} does not match its checksum"
    return None


def _swap_in(index_dir: Path, build_path: Path) -> None:
    """Point ``current`` at ``build_path`` in one atomic rename."""
    link = index_dir / f".current-{uuid.uuid4().hex}"
    link.symlink_to(Path("builds") / build_path.name)
    os.replace(link, index_dir / "current")


def _prune(index_dir: Path, keep: set[Path]) -> None:
    """Remove old and abandoned builds; the live one and its predecessor stay for running readers."""
    builds = index_dir / "builds"
    candidates = sorted((p for p in builds.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for path in candidates:
        if path.resolve() not in keep:
            shutil.rmtree(path, ignore_errors=True)


def build_index(
    corpus: Corpus,
    settings: Settings,
    embeddings: Embeddings,
    progress: Progress | None = None,
    on_wait: Callable[[], None] | None = None,
    force: bool = False,
    carry_over: Callable[[IndexBuild, Path], None] | None = None,
) -> IndexBuild:
    """Build a fresh index and make it live, unless a matching one already is (and not ``force``).

    ``carry_over(previous, folder)``, when given, runs before the new build goes live if the previous live build
    was made from the same corpus and settings: it may copy what was fitted against the previous one (whose
    records the new one repeats exactly) into the new folder.
    """
    index_dir = settings.index_dir
    expected = expected_manifest(corpus, settings)
    with build_lock(index_dir, settings.build_lock_timeout, on_wait):
        previous = live_build(index_dir)
        if not force and previous is not None and _matches(previous.manifest, expected):
            return previous  # someone else built it while we waited
        builds = index_dir / "builds"
        builds.mkdir(parents=True, exist_ok=True)
        path = builds / f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        documents = chunk_corpus(corpus, settings.chunk_chars)
        started = time.perf_counter()
        report = progress or (lambda done, total: None)
        _write_chroma(path, corpus, documents, embeddings, report)
        snapshot = write_snapshot(path, read_records(path))
        manifest = {
            "snapshot_sha256": snapshot,
            "files": file_checksums(path),
            **expected,
            "chunks": len(documents),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        # The manifest is written last: a folder without one is an unfinished build.
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if carry_over is not None and previous is not None and _matches(previous.manifest, expected):
            carry_over(previous, path)
        _swap_in(index_dir, path)
        keep = {path.resolve()} | ({previous.path} if previous else set())
        _prune(index_dir, keep)
        return IndexBuild(path=path, manifest=manifest)


def open_vector_store(build: IndexBuild, embeddings: Embeddings) -> Chroma:
    """The build as a LangChain vector store (for comparisons; answering reads the table instead).

    Opened on a private copy of its Chroma files, like :func:`private_copy`: Chroma's client writes to what it
    opens, and the live build's files must keep the checksums its manifest records. The copy is removed when the
    store is garbage-collected, or at exit.
    """
    from langchain_chroma import Chroma  # imported here: a serving process never needs it (23 MiB)

    folder = Path(tempfile.mkdtemp(prefix="assistant-index-"))
    _copy_chroma(build, folder)
    store = Chroma(client=_chroma_client(folder), collection_name=COLLECTION, embedding_function=embeddings)
    weakref.finalize(store, shutil.rmtree, folder, True)
    return store


def chroma_files(build: IndexBuild) -> list[Path]:
    """The build's Chroma files: its SQLite database and one folder per vector segment."""
    return [p for p in build.path.iterdir() if p.name == "chroma.sqlite3" or (p.is_dir() and _is_segment(p.name))]


def _is_segment(name: str) -> bool:
    with contextlib.suppress(ValueError):
        return uuid.UUID(name).hex == name.replace("-", "")
    return False


@contextlib.contextmanager
def private_copy(build: IndexBuild) -> Iterator[Path]:
    """A throw-away copy of the build's Chroma files, so that opening it never writes to the live build.

    Chroma's client writes to a database it opens (its own bookkeeping), which would change a build that other
    processes are reading; a private copy (about 30 MB) costs tens of milliseconds.
    """
    with tempfile.TemporaryDirectory(prefix="assistant-index-") as folder:
        target = Path(folder)
        _copy_chroma(build, target)
        yield target


def _copy_chroma(build: IndexBuild, target: Path) -> None:
    for path in chroma_files(build):
        if path.is_dir():
            shutil.copytree(path, target / path.name)
        else:
            shutil.copy2(path, target / path.name)


def read_records(path: Path, where: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every record of the four collections in the Chroma files at ``path``: ids, documents, metadata, vectors."""
    from chromadb.errors import NotFoundError

    include: Any = ["documents", "metadatas", "embeddings"]
    client = _chroma_client(path)
    try:
        return {name: dict(client.get_collection(name).get(include=include)) for name in COLLECTIONS}
    except (ValueError, NotFoundError) as error:
        raise IndexNotReadyError(
            f"The index in {where or path} is incomplete ({error}). Rebuild it with 'assistant index --force'."
        ) from None
    finally:
        client.close()


def write_snapshot(path: Path, records: dict[str, dict[str, Any]]) -> str:
    """Save the records as the build's serving snapshot (NumPy arrays and JSON, no pickle); its SHA-256."""
    arrays: dict[str, np.ndarray] = {}
    for name, found in records.items():
        arrays[f"{name}.vectors"] = np.asarray(found["embeddings"], dtype=np.float32)
        # Keys sorted: Chroma returns metadata keys in no fixed order, and the same records must give the same
        # bytes (the decisions cache is keyed by them: decisions.store.records_fingerprint).
        text = json.dumps(
            {"ids": found["ids"], "documents": found["documents"], "metadatas": found["metadatas"]}, sort_keys=True
        )
        arrays[f"{name}.records"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    target = path / SNAPSHOT
    with target.open("wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    return hashlib.sha256(target.read_bytes()).hexdigest()


def records_digest(records: dict[str, dict[str, Any]]) -> str:
    """SHA-256 of the records' content (ids, documents, metadata, float32 vectors) in id order.

    It does not depend on how the records were stored or in which order a store returns them, so a copy read
    back from a Chroma server can be checked against the build it was published from.
    """
    digest = hashlib.sha256()
    for name in COLLECTIONS:
        digest.update(name.encode())
        for record_id, text, meta, vector in records_by_id(records[name]):
            digest.update(json.dumps([record_id, text, meta or {}], sort_keys=True, ensure_ascii=False).encode())
            digest.update(np.asarray(vector, dtype=np.float32).tobytes())
    return digest.hexdigest()


def read_snapshot(build: IndexBuild) -> dict[str, dict[str, Any]]:
    """The records the build's snapshot holds, after checking it against the checksum in the manifest."""
    target = build.path / SNAPSHOT
    try:
        data = target.read_bytes()
    except OSError as error:
        raise IndexNotReadyError(
            f"The index's snapshot cannot be read ({error.strerror}). Rebuild it with 'assistant index --force'."
        ) from None
    if hashlib.sha256(data).hexdigest() != build.manifest.get("snapshot_sha256"):
        raise IndexNotReadyError(
            "The index is damaged: its snapshot does not match the checksum its build recorded. Rebuild it with "
            "'assistant index --force'."
        )
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            records = {}
            for name in COLLECTIONS:
                found = json.loads(arrays[f"{name}.records"].tobytes().decode("utf-8"))
                found["embeddings"] = arrays[f"{name}.vectors"]
                records[name] = found
    except (OSError, ValueError, KeyError) as error:
        raise IndexNotReadyError(
            f"The index is damaged: its snapshot cannot be read ({error}). Rebuild it with 'assistant index --force'."
        ) from None
    return records


def open_table(build: IndexBuild, corpus: Corpus) -> SentenceTable:
    """Every sentence of the build with its vectors, its paragraph's, its chunk's and its section heading's.

    Read from the build's snapshot: the records its Chroma collections hold, saved beside them when the build
    was written and checked against the manifest's checksum. Serving then neither imports Chroma's native code
    nor writes to the live build, so any number of processes share it. A build from before snapshots is read
    from a private copy of its Chroma files instead.
    """
    return table_from_records(build_records(build), corpus)


def build_records(build: IndexBuild) -> dict[str, dict[str, Any]]:
    """The build's records: from its snapshot, or (a build from before snapshots) a private copy of its files."""
    if "snapshot_sha256" in build.manifest:
        return read_snapshot(build)
    with private_copy(build) as copy:
        return read_records(copy, build.path)


def table_from_records(records: dict[str, dict[str, Any]], corpus: Corpus) -> SentenceTable:
    """The sentence table of one build's records (of its snapshot, or read from a Chroma server)."""
    chunk_records, sentences, paragraphs, headings = (records[name] for name in COLLECTIONS)
    chunk_rows = records_by_id(chunk_records)
    chunks = [Document(id=i, page_content=text, metadata=dict(meta or {})) for i, text, meta, _ in chunk_rows]
    chunk_vectors = np.vstack([np.asarray(row[3], dtype=np.float32) for row in chunk_rows])
    heading_vectors = {
        (str(meta["source_id"]), str(meta["section"])): np.asarray(vector, dtype=np.float32)
        for meta, vector in zip(headings["metadatas"], headings["embeddings"], strict=True)
    }
    return SentenceTable.from_records(corpus, sentences, paragraphs, chunks, chunk_vectors, heading_vectors)
