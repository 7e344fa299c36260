"""The service's self-check: verify the live index, probe the answerer, rebuild a damaged index, load new builds.

One background thread per server. At start, and every ``selfcheck_interval`` seconds, it

1. hashes every file of the live build against its manifest (and the fitted decisions against theirs);
2. when a file fails, marks the service damaged (every question gets the maintenance reply) and rebuilds the
   index from the corpus in a **child process**, so that a fault in native code (Chroma, ONNX Runtime) ends
   that process, never the server; the new build goes live by the usual atomic swap. The decisions fitted
   against the old build are carried over when their own checksums hold (the rebuilt records are the same);
3. loads the live build when it is not the one being answered from (after a rebuild, or one made by
   ``assistant index``), and rebuilds when the corpus on disk no longer matches it;
4. asks one probe question; an answerer that fails it is replaced by a new one, or the index rebuilt.

A failed rebuild or load is logged and retried after ``heal_retry_seconds``, doubling up to
``heal_retry_max_seconds``: never a tight loop, and the server keeps answering (or refusing) as before.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import threading
from typing import TYPE_CHECKING, Any, Protocol

from assistant.corpus import load_corpus
from assistant.errors import AssistantError
from assistant.index import expected_manifest
from assistant.integrity import build_id, check_live

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from assistant.index_server import IndexServer
    from assistant.serving import Serving
    from assistant.settings import Settings

log = logging.getLogger("assistant.selfcheck")


class Kept(Protocol):
    """What the self-check needs of the service it keeps (:class:`~assistant.service.AssistantService`)."""

    settings: Settings

    @property
    def serving(self) -> Serving | None:
        """The answerer in use and its build."""
        ...

    @property
    def disclaimer(self) -> str:
        """The disclaimer every reply must end with."""
        ...

    index_server_state: dict[str, Any]
    failed_build: str | None
    reload_error: AssistantError | None

    def mark_damaged(self, problem: str) -> None:
        """Refuse questions with the maintenance reply until a rebuilt index is loaded."""
        ...

    def reload_now(self, reason: str, first: bool = False) -> bool:
        """Load the live build and swap it in; False (old one kept) on failure."""
        ...

    def settle(self) -> None:
        """The first attempt to load has ended."""
        ...


def rebuild(settings: Settings, force: bool) -> None:
    """Build the index from the corpus and make it live, then fit (or carry over) its decisions.

    Runs in the child process :class:`SelfCheck` starts; ``force`` rebuilds even a build whose manifest matches.
    """
    corpus = load_corpus(settings.corpus_dir, settings.article_url)  # first: a missing corpus fails at once
    from assistant.assistant import prepare
    from assistant.embeddings import make_embeddings, vector_cache
    from assistant.index import build_index
    from assistant.integrity import copy_verified_decisions

    embeddings = make_embeddings(settings)
    build = build_index(
        corpus, settings, vector_cache(settings, embeddings), force=force, carry_over=copy_verified_decisions
    )
    log.info("Rebuilt the index as build %s", build_id(build))
    prepare(settings, embeddings=embeddings, corpus=corpus)


def _rebuild_main(settings: Settings, force: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        rebuild(settings, force)
    except AssistantError as error:
        log.error("The rebuild failed: %s", error)
        sys.exit(1)


class SelfCheck:
    """Keeps a service's answerer on an intact, current build (see the module's description)."""

    def __init__(self, service: Kept) -> None:
        self.service = service
        self.settings = service.settings
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: BaseProcess | None = None
        self._failures = 0
        self._index_server: IndexServer | None = None

    def start(self) -> None:
        """Start the background thread (the first load happens in it)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="assistant-selfcheck", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Check now rather than at the end of the interval."""
        self._wake.set()

    def stop(self) -> None:
        """Stop checking; end a rebuild in progress (its unfinished folder is removed by the next build)."""
        self._stop.set()
        self._wake.set()
        child = self._child
        if child is not None and child.is_alive():
            child.terminate()
            child.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.tick()
            except Exception:  # the check must never die: log and try again later
                log.exception("The self-check failed")
                delay = self._failed()
            finally:
                if self.service.serving is not None or self._failures:
                    self.service.settle()
            if delay > 0:
                self._wake.wait(delay)
            self._wake.clear()

    def _failed(self) -> float:
        """The wait before the next attempt after ``_failures`` failures in a row."""
        self._failures += 1
        wait = self.settings.heal_retry_seconds * 2 ** (self._failures - 1)
        return float(min(wait, self.settings.heal_retry_max_seconds))

    def _succeeded(self, delay: float) -> float:
        self._failures = 0
        return delay

    def tick(self) -> float:
        """One check; returns the seconds until the next (0: at once)."""
        if self.settings.chroma_url:
            return self.follow_index_server()
        service = self.service
        verdict = check_live(self.settings.index_dir)
        serving = service.serving
        if verdict.problem is not None or (verdict.missing and serving is not None):
            service.mark_damaged(verdict.problem or "the index's current link is gone")
            return self._rebuild(force=True)
        if serving is None:
            # The first load may build a missing or stale index in this process, as the first start always has.
            if service.reload_now("start", first=True):
                return self._succeeded(self.settings.selfcheck_interval)
            return self._failed()
        assert verdict.build is not None
        corpus = load_corpus(self.settings.corpus_dir, self.settings.article_url)
        expected = expected_manifest(corpus, self.settings)
        if any(verdict.build.manifest.get(key) != value for key, value in expected.items()):
            log.info("The corpus or settings changed since build %s; rebuilding", build_id(verdict.build))
            return self._rebuild(force=False)
        if serving.build is None or serving.build.path != verdict.build.path:
            if service.reload_now(f"build {build_id(verdict.build)} is live"):
                return self._succeeded(self.settings.selfcheck_interval)
            return self._failed()
        if not self._probe():
            if service.reload_now("the probe question failed"):
                return self._succeeded(self.settings.selfcheck_interval)
            service.mark_damaged("the probe question failed, and so did a fresh answerer")
            return self._rebuild(force=True)
        return self._succeeded(self.settings.selfcheck_interval)

    def follow_index_server(self) -> float:
        """With an index server: read its live pointer; load the build it names when that is not the one served.

        The build in use keeps answering from memory while the server is away, and a build that failed to load
        for a reason other than an unreachable server is not tried again until another one goes live (each try
        reads a whole version). Local files are not checked: a build read from the server was checked against
        its digest as it was read.
        """
        from assistant.index_server import IndexServer, IndexServerUnavailableError

        service = self.service
        interval = self.settings.chroma_poll_seconds
        if self._index_server is None:
            self._index_server = IndexServer(self.settings)
        live: str | None = None
        try:
            live = self._index_server.version(self.settings.chroma_build).build_id
        except AssistantError as error:
            if "message" not in service.index_server_state:
                log.error("Index server: %s", error)
            reachable = not isinstance(error, IndexServerUnavailableError)
            service.index_server_state = {"reachable": reachable, "live_build": None, "message": str(error)}
        else:
            if "message" in service.index_server_state:
                log.info("Index server readable again; build %s is live", live)
            service.index_server_state = {"reachable": True, "live_build": live}
        serving = service.serving
        if serving is None:
            # Nothing answers yet: try at every poll (the load says why it failed, as the health check shows).
            if service.reload_now("start", first=True):
                return self._succeeded(interval)
            self._failures += 1
            return interval
        if live is None or live in (serving.build_id, service.failed_build):
            return self._succeeded(interval)
        loaded = service.reload_now(f"build {live} is live in the index server (serving {serving.build_id})")
        if not loaded and not isinstance(service.reload_error, IndexServerUnavailableError):
            service.failed_build = live
        return self._succeeded(interval)

    def _probe(self) -> bool:
        serving = self.service.serving
        if serving is None:
            return False
        try:
            with serving.use() as answerer:
                answer = answerer.ask(self.settings.selfcheck_question, [])
        except Exception:  # any failure of the probe is the finding itself
            log.exception("The probe question failed")
            return False
        passed = answer.disclaimer == self.service.disclaimer and answer.answered and bool(answer.citations)
        if not passed:
            log.error("The probe question got a reply without citations or disclaimer")
        return passed

    def _rebuild(self, force: bool) -> float:
        """Rebuild in a child process; 0 on success (check again at once), else the wait before the next try."""
        context = multiprocessing.get_context("spawn")  # no fork: this process runs threads
        child = context.Process(target=_rebuild_main, args=(self.settings, force), name="assistant-rebuild")
        log.info("Rebuilding the index in a child process (attempt %d)", self._failures + 1)
        self._child = child
        child.start()
        child.join()
        self._child = None
        if child.exitcode == 0:
            return self._succeeded(0.0)
        delay = self._failed()
        log.error(
            "The rebuild failed (exit code %s, attempt %d); trying again in %.0f s",
            child.exitcode,
            self._failures,
            delay,
        )
        return delay
