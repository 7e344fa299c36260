"""The index in a Chroma server: each build published whole as a new version, one live pointer switched atomically.

What the server holds (``<prefix>`` is ASSISTANT_CHROMA_PREFIX)::

    <prefix>-<build>-corpus, -sentences, -paragraphs, -headings   one version's records, with their vectors
    <prefix>-<build>-files    the version's manifest, corpus files, question bank and fitted decisions, in parts
                              (base64)
    <prefix>-live             one record ('live') naming the live build and holding its manifest

``assistant index`` builds and fits in ``index_dir`` exactly as without a server, then publishes: it writes the
new version's collections, checks their counts, reads them back and checks their content digest against the
build, and only then upserts the pointer record. One upsert of one record is atomic, so a reader sees the old
pointer or the new one, and the pointer never names a version that is not complete. The newest
``chroma_keep_builds`` versions stay; older ones are deleted after a publication.

A server reads the pointer, copies the version's files into ``index_dir/served/<build>/`` and reads its records
into the same in-memory :class:`~assistant.sentences.SentenceTable` a local build gives, checked against the
manifest's counts and digest; it then answers from memory alone.

The fitted decisions travel with the version instead of being fitted again by each server: a fit takes about a
minute of both cores, which every replica would spend at every switch, and the published decisions are exactly
those whose cross-validation figures ``assistant index`` printed. A server whose bank, trainer, decision settings
or scikit-learn differ (another key) refuses the version with a sentence saying so. The decisions are a pickle
file, loaded as the local build's are: the Chroma server must be as trusted as the index artifact it replaces
(reachable only by the builder and the servers); checksums catch damage, not someone who may write to it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from assistant.bank import bank_files
from assistant.errors import IndexNotReadyError
from assistant.index import COLLECTIONS, MANIFEST, IndexBuild, records_digest
from assistant.sentences import records_by_id
from assistant.settings import Settings

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

log = logging.getLogger("assistant.index_server")

FILES = "files"
POINTER = "live"
POINTER_ID = "live"
SERVED = "served"
"""Folder under ``index_dir`` where a server keeps the files of the versions it loaded."""
RECORD_PAGE = 500
"""Records read or written per request: 500 records with 384-dimensional vectors are about 2.5 MB of JSON,
well under the server's request limits and few enough requests (about 15) to load a version."""
FILE_PART_BYTES = 512 * 1024
"""A file is stored in parts of this many bytes (about 0.7 MB once base64-encoded), one record each."""
FILE_PAGE = 4
"""File parts read per request (about 3 MB)."""
VECTOR_RTOL = 1e-6
"""Relative difference allowed between a vector written and read back: a float32 holds about 7 significant
digits, and a round trip through the server's JSON may change the last one (seen: 1 unit in the last place)."""
NO_VECTOR = [1.0]
"""Chroma stores a vector with every record; the pointer and the file parts are only ever read by id."""
HNSW = {"hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 200}}
"""The same search configuration as a local build's collections (assistant/index.py)."""


class IndexServerUnavailableError(IndexNotReadyError):
    """The Chroma server cannot be reached or failed a request; nothing was changed."""


class NoPublishedBuildError(IndexNotReadyError):
    """The Chroma server holds no live build (or not the build asked for)."""


UNREACHABLE = (
    "The index server (Chroma, ASSISTANT_CHROMA_URL) cannot be reached ({problem}). Check that the Chroma server is "
    "running; servers try it again every {poll:.0f} s."
)


@dataclass(frozen=True)
class Version:
    """One published build: its id and its manifest."""

    build_id: str
    manifest: dict[str, Any]


def new_build_id() -> str:
    """A build id that sorts by publication time and is unique (timestamp and random part)."""
    return f"{time.strftime('%Y%m%dt%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def _chroma_errors() -> tuple[type[BaseException], ...]:
    from chromadb.errors import ChromaError

    return (httpx.HTTPError, ChromaError, ConnectionError, OSError, ValueError)


class IndexServer:
    """The index's versions in one Chroma server (``settings.chroma_url``), read and written over HTTP."""

    def __init__(self, settings: Settings) -> None:
        if not settings.chroma_url:
            raise ValueError("IndexServer needs settings.chroma_url")
        self.settings = settings
        self.prefix = settings.chroma_prefix
        self._client: ClientAPI | None = None

    # -- connection ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _requests(self) -> Iterator[None]:
        """Any failure of the server or the network becomes :class:`IndexServerUnavailableError`."""
        try:
            yield
        except IndexNotReadyError:
            raise
        except _chroma_errors() as error:
            self._client = None
            problem = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise IndexServerUnavailableError(
                UNREACHABLE.format(problem=problem, poll=self.settings.chroma_poll_seconds)
            ) from None

    def client(self) -> ClientAPI:
        """An HTTP client of the server (connected once, again after a failure)."""
        if self._client is not None:
            return self._client
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        url = urlsplit(str(self.settings.chroma_url))
        if url.scheme not in {"http", "https"} or not url.hostname:
            raise IndexNotReadyError(
                f"ASSISTANT_CHROMA_URL {self.settings.chroma_url!r} is not a server address; use the form "
                "http://host:port (the address 'chroma run' listens on)."
            )
        with self._requests():
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=ChromaSettings(anonymized_telemetry=False),
            )
        # chromadb's HTTP client waits forever (httpx timeout None) and has no setting for it; a server that
        # accepts connections but never answers would then stall the self-check's polling for good.
        session = getattr(getattr(client, "_server", None), "_session", None)
        if isinstance(session, httpx.Client):
            session.timeout = httpx.Timeout(self.settings.chroma_timeout)
        self._client = client
        return client

    def name(self, build_id: str, collection: str) -> str:
        """The collection name of one part of one version."""
        return f"{self.prefix}-{build_id}-{collection}"

    def _collection(self, name: str, build_id: str) -> Collection:
        from chromadb.errors import NotFoundError

        try:
            return self.client().get_collection(name, embedding_function=None)  # type: ignore[arg-type]
        except NotFoundError:
            raise NoPublishedBuildError(
                f"Build {build_id} is not (or no longer) in the index server: its collection {name} is missing. "
                "Publish a build with 'assistant index', or unset ASSISTANT_CHROMA_BUILD to follow the live one."
            ) from None

    # -- reading ------------------------------------------------------------------------------------

    def live(self) -> Version:
        """The build the pointer names, with its manifest."""
        from chromadb.errors import NotFoundError

        with self._requests():
            try:
                pointer = self.client().get_collection(f"{self.prefix}-{POINTER}", embedding_function=None)  # type: ignore[arg-type]
                found = pointer.get(ids=[POINTER_ID], include=["metadatas"])  # type: ignore[list-item]
            except NotFoundError:
                found = {"ids": []}  # type: ignore[typeddict-item]
            if not found["ids"]:
                raise NoPublishedBuildError(
                    "No index has been published to the index server (Chroma, ASSISTANT_CHROMA_URL) under the "
                    f"prefix '{self.prefix}' yet. Run 'assistant index' with the same ASSISTANT_CHROMA_URL."
                )
            meta = (found["metadatas"] or [{}])[0] or {}
            try:
                return Version(build_id=str(meta["build"]), manifest=json.loads(str(meta["manifest"])))
            except (KeyError, ValueError):
                raise NoPublishedBuildError(
                    f"The live pointer in the index server ({self.prefix}-{POINTER}) is damaged. Publish a build "
                    "with 'assistant index' to write it again."
                ) from None

    def version(self, build_id: str | None = None) -> Version:
        """The build asked for (its manifest as published), or the live one."""
        if build_id is None:
            return self.live()
        with self._requests():
            files = self._read_files(build_id, only=MANIFEST)
        return Version(build_id=build_id, manifest=json.loads(files[MANIFEST]))

    def records(self, version: Version) -> dict[str, dict[str, Any]]:
        """Every record of the version's collections, checked against its manifest's counts and digest."""
        with self._requests():
            records = self._read_records(version.build_id)
        counts = {name: len(records[name]["ids"]) for name in COLLECTIONS}
        if counts != version.manifest.get("counts") or records_digest(records) != version.manifest.get(
            "records_sha256"
        ):
            raise IndexNotReadyError(
                f"Build {version.build_id} in the index server is incomplete or damaged: its records "
                f"({counts}) do not match what its manifest recorded. Publish a new one with 'assistant index'."
            )
        return records

    def _read_records(self, build_id: str) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for name in COLLECTIONS:
            collection = self._collection(self.name(build_id, name), build_id)
            found: dict[str, list[Any]] = {"ids": [], "documents": [], "metadatas": [], "embeddings": []}
            while True:
                page = collection.get(
                    include=["documents", "metadatas", "embeddings"],  # type: ignore[list-item]
                    limit=RECORD_PAGE,
                    offset=len(found["ids"]),
                )
                for key in found:
                    found[key].extend(page[key] if page[key] is not None else [])  # type: ignore[literal-required]
                if len(page["ids"]) < RECORD_PAGE:
                    break
            records[name] = {
                **found,
                "embeddings": np.asarray(found["embeddings"], dtype=np.float32).reshape(len(found["ids"]), -1),
            }
        return records

    def _read_files(self, build_id: str, only: str | None = None) -> dict[str, bytes]:
        """The version's files (or the one named ``only``), reassembled and checked against their checksums."""
        collection = self._collection(self.name(build_id, FILES), build_id)
        parts: dict[str, dict[int, str]] = {}
        sums: dict[str, tuple[str, int]] = {}
        where: Any = {"path": only} if only else None
        offset = 0
        while True:
            page = collection.get(include=["metadatas"], where=where, limit=FILE_PAGE, offset=offset)  # type: ignore[list-item]
            for meta in page["metadatas"] or []:
                path = str(meta["path"])
                parts.setdefault(path, {})[int(meta["part"])] = str(meta["data"])  # type: ignore[arg-type]
                sums[path] = (str(meta["sha256"]), int(meta["parts"]))  # type: ignore[arg-type]
            offset += len(page["ids"])
            if len(page["ids"]) < FILE_PAGE:
                break
        files: dict[str, bytes] = {}
        for path, pieces in parts.items():
            sha, count = sums[path]
            data = b"".join(base64.b64decode(pieces[n]) for n in sorted(pieces))
            if len(pieces) != count or hashlib.sha256(data).hexdigest() != sha:
                raise IndexNotReadyError(
                    f"Build {build_id} in the index server is damaged: its file {path} does not match its checksum. "
                    "Publish a new one with 'assistant index'."
                )
            files[path] = data
        if only is not None and only not in files:
            raise NoPublishedBuildError(
                f"Build {build_id} in the index server has no {only}; it was never completely published. Use "
                "another build, or unset ASSISTANT_CHROMA_BUILD to follow the live one."
            )
        return files

    def materialize(self, version: Version, root: Path) -> IndexBuild:
        """The version's files (manifest, corpus, decisions) in ``root/<build>/``, written once, atomically."""
        target = root / version.build_id
        if _manifest_of(target) == version.manifest:
            return IndexBuild(path=target, manifest=version.manifest)
        with self._requests():
            files = self._read_files(version.build_id)
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".{version.build_id}-{uuid.uuid4().hex[:8]}"
        try:
            for path, data in files.items():
                if path == MANIFEST:
                    continue
                destination = staging / path
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(data)
            # The manifest is written last: a folder without one is unfinished.
            (staging / MANIFEST).write_text(json.dumps(version.manifest, indent=2), encoding="utf-8")
            if target.exists() and _manifest_of(target) != version.manifest:
                shutil.rmtree(target, ignore_errors=True)  # left by an unfinished copy
            with contextlib.suppress(OSError):  # another process may have put the same copy in place first
                os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        if _manifest_of(target) != version.manifest:
            raise IndexNotReadyError(f"The files of build {version.build_id} could not be written to {target}.")
        _prune_served(root, keep=self.settings.chroma_keep_builds)
        return IndexBuild(path=target, manifest=version.manifest)

    # -- publishing ---------------------------------------------------------------------------------

    def publish(self, build: IndexBuild, records: dict[str, dict[str, Any]], files: dict[str, bytes]) -> Version:
        """Write ``build`` as a new version, check it, switch the pointer to it, then delete old versions.

        ``records`` are the build's records (its snapshot) and ``files`` what a server needs besides them, by
        relative path (``corpus/...``, ``decisions/<key>/...``).
        """
        build_id = new_build_id()
        with self._requests():
            client = self.client()
            for name in COLLECTIONS:
                self._write_records(client, self.name(build_id, name), records[name])
            # Read back as a server will: the pointer moves only to a version that reads back whole. The digest
            # is of what the server returns (its vectors may differ from the build's in the last bit of a float32).
            held = self._read_records(build_id)
            _check_same(records, held, build_id)
            manifest = {key: value for key, value in build.manifest.items() if key != "snapshot_sha256"}
            manifest.update(
                {
                    "build": build_id,
                    "source_build": build.path.name,
                    "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "counts": {name: len(held[name]["ids"]) for name in COLLECTIONS},
                    "records_sha256": records_digest(held),
                    "files": {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())},
                }
            )
            self._write_files(client, build_id, {**files, MANIFEST: json.dumps(manifest, indent=2).encode()})
            self._read_files(build_id)
            version = Version(build_id=build_id, manifest=manifest)
            pointer = client.get_or_create_collection(f"{self.prefix}-{POINTER}", embedding_function=None)  # type: ignore[arg-type]
            pointer.upsert(
                ids=[POINTER_ID],
                embeddings=np.asarray([NO_VECTOR], dtype=np.float32),
                documents=[build_id],
                metadatas=[{"build": build_id, "manifest": json.dumps(manifest)}],
            )
            if self.live().build_id != build_id:
                raise IndexServerUnavailableError(
                    f"Build {build_id} was written, but the live pointer does not name it; another "
                    "'assistant index' may have published at the same moment. Run 'assistant index' again."
                )
        try:
            self.prune(keep_live=build_id)
        except IndexNotReadyError as error:  # the new build is live; old ones wait for the next publication
            log.warning("Build %s is live, but older builds were not deleted: %s", build_id, error)
        return version

    def _write_records(self, client: ClientAPI, name: str, records: dict[str, Any]) -> None:
        collection = client.create_collection(name, configuration=HNSW, embedding_function=None)  # type: ignore[arg-type]
        ids = records["ids"]
        for offset in range(0, len(ids), RECORD_PAGE):
            end = offset + RECORD_PAGE
            collection.add(
                ids=list(ids[offset:end]),
                documents=list(records["documents"][offset:end]),
                metadatas=list(records["metadatas"][offset:end]),
                embeddings=np.asarray(records["embeddings"][offset:end], dtype=np.float32),
            )
        if collection.count() != len(ids):
            raise IndexNotReadyError(
                f"The index server holds {collection.count()} of {len(ids)} records in {name}; the build was not "
                "made live. Run 'assistant index' again."
            )

    def _write_files(self, client: ClientAPI, build_id: str, files: dict[str, bytes]) -> None:
        collection = client.create_collection(self.name(build_id, FILES), embedding_function=None)  # type: ignore[arg-type]
        ids, documents, metadatas = [], [], []
        for path, data in sorted(files.items()):
            sha = hashlib.sha256(data).hexdigest()
            pieces = [data[i : i + FILE_PART_BYTES] for i in range(0, len(data), FILE_PART_BYTES)] or [b""]
            for number, piece in enumerate(pieces):
                ids.append(f"{path}#{number:05d}")
                documents.append(path)
                # In the metadata, not the document: Chroma indexes documents for full-text search, which takes
                # tens of seconds per megabyte of base64; metadata is stored as it is.
                encoded = base64.b64encode(piece).decode("ascii")
                metadatas.append({"path": path, "part": number, "parts": len(pieces), "sha256": sha, "data": encoded})
        for offset in range(0, len(ids), FILE_PAGE):
            end = offset + FILE_PAGE
            collection.add(
                ids=ids[offset:end],
                documents=documents[offset:end],
                metadatas=metadatas[offset:end],  # type: ignore[arg-type]
                embeddings=np.asarray([NO_VECTOR] * len(ids[offset:end]), dtype=np.float32),
            )
        if collection.count() != len(ids):
            raise IndexNotReadyError(
                f"The index server holds {collection.count()} of {len(ids)} file parts of build {build_id}; it was "
                "not made live. Run 'assistant index' again."
            )

    def builds(self) -> list[str]:
        """Ids of every version (complete or not) the server holds under this prefix, oldest first."""
        with self._requests():
            names = [getattr(c, "name", c) for c in self.client().list_collections()]
        found = set()
        for name in names:
            for part in (*COLLECTIONS, FILES):
                head, tail = f"{self.prefix}-", f"-{part}"
                if str(name).startswith(head) and str(name).endswith(tail):
                    found.add(str(name)[len(head) : -len(tail)])
        return sorted(found)

    def prune(self, keep_live: str) -> list[str]:
        """Delete every version but the newest ``chroma_keep_builds`` (and never the live one); the deleted ids."""
        from chromadb.errors import NotFoundError

        builds = self.builds()
        keep = set(builds[-self.settings.chroma_keep_builds :]) | {keep_live}
        deleted = [build_id for build_id in builds if build_id not in keep]
        with self._requests():
            for build_id in deleted:
                for part in (FILES, *COLLECTIONS):  # the files (and manifest) first: the version is then unusable
                    with contextlib.suppress(NotFoundError):
                        self.client().delete_collection(self.name(build_id, part))
        return deleted


def _check_same(written: dict[str, dict[str, Any]], held: dict[str, dict[str, Any]], build_id: str) -> None:
    """The records read back are those written.

    The same ids, texts and metadata, and the same float32 vectors up to the last bit (the server's JSON may
    round one).
    """
    for name in COLLECTIONS:
        ours, theirs = records_by_id(written[name]), records_by_id(held[name])
        same = len(ours) == len(theirs) and all(
            (a[0], a[1], a[2] or {}) == (b[0], b[1], b[2] or {}) for a, b in zip(ours, theirs, strict=True)
        )
        if same and ours:
            vectors = np.asarray([row[3] for row in ours], dtype=np.float32)
            served = np.asarray([row[3] for row in theirs], dtype=np.float32)
            same = vectors.shape == served.shape and bool(np.allclose(vectors, served, rtol=VECTOR_RTOL, atol=0))
        if not same:
            raise IndexNotReadyError(
                f"The index server returned {name} of build {build_id} unlike they were written; the build was not "
                "made live. Run 'assistant index' again, and check the Chroma server's log."
            )


def _manifest_of(folder: Path) -> dict[str, Any] | None:
    try:
        found = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _prune_served(root: Path, keep: int) -> None:
    """Keep the files of the newest ``keep`` versions this server loaded (their decisions are in memory)."""
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    complete = [p for p in folders if not p.name.startswith(".")]
    for folder in complete[:-keep]:
        shutil.rmtree(folder, ignore_errors=True)


BANK = "bank"
"""Folder of a published build's files holding the question bank its decisions were fitted on."""


def publishable_files(corpus_dir: Path, decisions_dir: Path, bank_dir: Path) -> dict[str, bytes]:
    """What a server needs besides the records: the corpus files, the question bank and the fitted decisions.

    The bank travels with the build because its gold spans are slices of this corpus, and the decisions' key
    depends on it: a server then needs no bank of its own that matches the corpus it serves.
    """
    files = {
        f"corpus/{path.name}": path.read_bytes()
        for path in sorted(corpus_dir.iterdir())
        if path.is_file() and path.suffix in {".md", ".yaml", ".yml"}
    }
    files.update({f"{BANK}/{path.name}": path.read_bytes() for path in bank_files(bank_dir)})
    decisions = decisions_dir.relative_to(decisions_dir.parent.parent)  # decisions/<key>
    for path in sorted(decisions_dir.iterdir()):
        if path.is_file():
            files[f"{decisions.as_posix()}/{path.name}"] = path.read_bytes()
    return files
