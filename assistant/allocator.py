"""How a serving process holds its memory: malloc's arenas and free pages, and the cyclic collector at start-up.

glibc gives each new thread that allocates its own malloc arena, up to eight per core, and returns little of
their freed memory to the system. The server runs many threads (uvicorn's, Gradio's, the answer slots), so its
resident memory kept rising through a long soak although the Python heap, traced, stayed bounded. In a
25-minute soak at the design load beside an uncapped server (same code, same questions, at the same time), the
server capped at two arenas ended at 677 MiB against 843, at the same latency (``docs/performance.md``).

Within an arena, glibc returns pages to the system only from the top of each heap: pages freed in the middle
(a finished request's buffers beside a session that lives on) stay resident. :class:`HeapTrimmer` asks it every
so often to return every wholly free page (``malloc_trim``).

Starting to answer builds about 420,000 objects that live as long as the process: modules, the sentence table,
the fitted decisions. Python's cyclic collector walks the objects it tracks again and again as they are made,
and each full collection afterwards walks all of them (0.17 s here). :func:`startup_heap` builds them with the
collector paused and then freezes them (``gc.freeze``) out of its reach; a fresh process answered its first
question about 0.3 s sooner (``scripts/bench_assistant.py``). Frozen objects are never collected as cycles, so
:func:`release_startup_heap` thaws them when a reload has let an answerer go.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import threading
import time
from collections.abc import Iterator

log = logging.getLogger("assistant.allocator")

M_ARENA_MAX = -8
"""``mallopt``'s parameter for the arena cap (``M_ARENA_MAX`` in glibc's ``malloc.h``)."""
VARIABLE = "MALLOC_ARENA_MAX"


_applied: int | None = None
"""The cap :func:`limit_arenas` applied in this process, if any."""


def limit_arenas(arenas: int) -> bool:
    """Cap malloc arenas at ``arenas`` in this process and in the processes it starts; True when applied.

    0 leaves glibc's default. A cap already set in the environment is kept (glibc applied it at start). Where
    the C library is not glibc nothing changes. Called again with the cap it applied, it changes nothing and
    says True.
    """
    global _applied
    if arenas > 0 and arenas == _applied:
        return True
    if arenas <= 0 or VARIABLE in os.environ:
        return False
    libc = _glibc()
    if libc is None:
        log.info("No glibc mallopt here; malloc arenas left as they are")
        return False
    if not libc.mallopt(M_ARENA_MAX, arenas):
        return False
    os.environ[VARIABLE] = str(arenas)  # read by glibc in every process started from here (answer processes)
    _applied = arenas
    return True


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has ``mallopt`` and ``malloc_trim``), else None; looked up once."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, TypeError, AttributeError):
        return None
    return libc


def trim_heap() -> bool:
    """Return every wholly free page of every malloc arena to the system; True when some memory was returned.

    ``malloc_trim(0)`` walks the arenas' free chunks (holding each arena's lock for the walk: 18-54 ms in a soak)
    and releases their whole pages, wherever in a heap they are. ctypes lets go of the GIL for the call.
    """
    libc = _glibc()
    return bool(libc.malloc_trim(0)) if libc is not None else False


class HeapTrimmer:
    """A daemon thread that calls :func:`trim_heap` every ``interval`` seconds (0: never) until stopped."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.trims = 0
        self.longest = 0.0
        """Seconds the longest trim took (each new longest is logged)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Start trimming; False when the interval is 0 or the C library cannot trim."""
        if self.interval <= 0 or _glibc() is None or self._thread is not None:
            return False
        self._thread = threading.Thread(target=self._run, name="assistant-heap-trim", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            started = time.perf_counter()
            returned = trim_heap()
            took = time.perf_counter() - started
            self.trims += 1
            if took > self.longest:
                self.longest = took
                log.info(
                    "Heap trim %d took %.1f ms (%s), the longest yet",
                    self.trims,
                    took * 1000,
                    "memory returned" if returned else "nothing to return",
                )

    def stop(self) -> None:
        """Stop the thread (at most one trim still running) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


_heap_lock = threading.Lock()
_heap_depth = 0
_heap_was_enabled = True
_freeze_wanted = False
_heap_frozen = False


@contextlib.contextmanager
def startup_heap(freeze: bool = True) -> Iterator[None]:
    """Pause the cyclic collector while long-lived objects are built; freeze them once the outermost block ends.

    Only the first freeze in a process happens (the one that ends a successful start): a later freeze would also
    catch whatever cyclic garbage was waiting for the collector, and keep it for good. ``freeze=False`` only
    pauses the collector (an import that an answerer's start follows). Blocks nest, from any thread: the
    outermost restores the collector as it found it.
    """
    global _heap_depth, _heap_was_enabled, _freeze_wanted, _heap_frozen
    with _heap_lock:
        if _heap_depth == 0:
            _heap_was_enabled = gc.isenabled()
            gc.disable()
        _heap_depth += 1
    succeeded = False
    try:
        yield
        succeeded = True
    finally:
        with _heap_lock:
            _heap_depth -= 1
            _freeze_wanted = _freeze_wanted or (freeze and succeeded)
            if _heap_depth == 0:
                if _freeze_wanted and not _heap_frozen:
                    gc.freeze()
                    _heap_frozen = True
                _freeze_wanted = False
                if _heap_was_enabled:
                    gc.enable()


def release_startup_heap() -> None:
    """Thaw the frozen start-up objects, collect what is garbage among them, and freeze the rest again.

    For after a reload has retired an answerer: its objects were frozen with the process's start, and cycles
    among them would otherwise never be freed. The full collection holds the interpreter for a fraction of a
    second, once per reload.
    """
    with _heap_lock:
        if not _heap_frozen:
            return
        gc.unfreeze()
        gc.collect()
        gc.freeze()
