"""The malloc arena cap and the heap trim, observed in glibc's own accounting and in a process's resident memory;
the cyclic collector's pause and freeze at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from assistant.allocator import VARIABLE, HeapTrimmer, limit_arenas

SCRIPT = """
import ctypes, os, sys, tempfile, threading
from assistant.allocator import limit_arenas

applied = limit_arenas(int(sys.argv[1]))
together = threading.Barrier(8)

def allocate():
    blocks = [bytearray(100_000) for _ in range(4)]  # from a malloc arena (below the mmap threshold)
    together.wait()  # every thread alive at once, so none inherits another's arena
    del blocks

threads = [threading.Thread(target=allocate) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
path = tempfile.mktemp()
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, stream)
libc.fclose(stream)
print(applied, os.environ.get("MALLOC_ARENA_MAX"), open(path).read().count("<heap nr="))
"""


def arenas_after_eight_threads(cap: int, **env: str) -> tuple[str, str, int]:
    clean = {k: v for k, v in os.environ.items() if k != VARIABLE} | env
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cap)], capture_output=True, text=True, env=clean, check=True
    )
    applied, variable, heaps = done.stdout.split()
    return applied, variable, int(heaps)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_cap_of_two_keeps_eight_allocating_threads_in_two_arenas() -> None:
    assert arenas_after_eight_threads(2) == ("True", "2", 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_without_a_cap_glibc_gives_the_threads_arenas_of_their_own() -> None:
    applied, variable, heaps = arenas_after_eight_threads(0)
    assert (applied, variable) == ("False", "None") and heaps > 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_cap_already_in_the_environment_is_kept() -> None:
    applied, variable, heaps = arenas_after_eight_threads(2, MALLOC_ARENA_MAX="1")
    assert (applied, variable, heaps) == ("False", "1", 1)


def test_zero_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    assert limit_arenas(0) is False and VARIABLE not in os.environ


# -- giving freed pages back ----------------------------------------------------------------------------

TRIM_SCRIPT = """
import os
from assistant.allocator import trim_heap

def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

blocks = [bytes(2000) + bytes([i % 256]) for i in range(60_000)]  # about 120 MB from malloc (past pymalloc's 512)
filled = resident()
kept = blocks[::32]  # one block in 32 lives on, so the freed ones lie between live ones, not at the heap's top
del blocks
freed = resident()
trimmed = trim_heap()
print(filled, freed, resident(), trimmed)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_a_trim_gives_back_pages_freed_between_live_blocks() -> None:
    done = subprocess.run([sys.executable, "-c", TRIM_SCRIPT], capture_output=True, text=True, check=True)
    filled, freed, after, trimmed = done.stdout.split()
    released = 60_000 * 2000 * 31 // 32
    assert int(freed) > int(filled) - released // 2  # freeing alone left most of the pages resident
    assert int(freed) - int(after) > released // 2 and trimmed == "True"  # the trim returned most of them


def test_the_trimmer_trims_every_interval_until_stopped() -> None:
    trimmer = HeapTrimmer(0.02)
    assert trimmer.start() is (sys.platform.startswith("linux"))
    if trimmer._thread is not None:
        deadline = time.monotonic() + 30
        while trimmer.trims < 3:
            assert time.monotonic() < deadline, "the trimmer never trimmed three times"
            time.sleep(0.01)
    trimmer.stop()
    assert trimmer._thread is None or not trimmer._thread.is_alive()
    trims = trimmer.trims
    time.sleep(0.1)
    assert trimmer.trims == trims and (trimmer.longest > 0) is (trims > 0)


def test_an_interval_of_zero_starts_no_trimmer() -> None:
    trimmer = HeapTrimmer(0)
    assert trimmer.start() is False and trimmer._thread is None


# -- the cyclic collector at start-up ---------------------------------------------------------------


@pytest.fixture
def fresh_heap(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A process that has not frozen its start-up heap yet; whatever the test freezes is thawed after."""
    import gc

    from assistant import allocator

    monkeypatch.setattr(allocator, "_heap_frozen", False)
    yield allocator
    gc.unfreeze()
    assert gc.isenabled()


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def _survives_collection(build: Callable[[], _Node]) -> bool:
    """Whether a reference cycle made by ``build`` outlives a full collection once nothing else refers to it.

    Frozen objects are out of the collector's reach, so a frozen cycle survives. (The number of frozen objects
    is no measure here: objects frozen by earlier tests in this process are freed by their reference counts.)
    """
    import gc
    import weakref

    gone = weakref.ref(build())
    gc.collect()
    return gone() is not None


def test_the_collector_is_paused_in_a_start_and_restored_by_the_outermost_block(fresh_heap: ModuleType) -> None:
    import gc

    from assistant.allocator import startup_heap

    assert gc.isenabled()
    made: list[_Node] = []
    with startup_heap(freeze=False):
        assert not gc.isenabled()
        with startup_heap(freeze=False):
            assert not gc.isenabled()
            made.append(_Node())
        assert not gc.isenabled()  # the inner block's end leaves it paused
    assert gc.isenabled()
    assert not _survives_collection(made.pop)  # paused, not frozen: still collectable


def test_a_start_that_fails_freezes_nothing_and_the_first_that_succeeds_freezes_once(fresh_heap: ModuleType) -> None:
    import gc

    from assistant.allocator import startup_heap

    made: list[_Node] = []
    with pytest.raises(RuntimeError), startup_heap():
        made.append(_Node())
        raise RuntimeError("the index is damaged")
    assert gc.isenabled()
    assert not _survives_collection(made.pop)
    with startup_heap():
        made.append(_Node())
    assert _survives_collection(made.pop)  # the first successful start: frozen
    with startup_heap():
        made.append(_Node())  # a later start (a reload): not frozen, its garbage stays collectable
    assert not _survives_collection(made.pop)


def test_a_released_heap_frees_the_cycles_frozen_with_the_start(fresh_heap: ModuleType) -> None:
    import gc
    import weakref

    from assistant.allocator import release_startup_heap, startup_heap

    with startup_heap():
        node = _Node()
    gone = weakref.ref(node)
    del node
    gc.collect()
    assert gone() is not None  # frozen: the collector no longer looks at it (a retired answerer would stay)
    release_startup_heap()
    assert gone() is None
    assert gc.get_freeze_count() > 0  # what is still alive is frozen again
