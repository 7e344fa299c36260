"""The malloc arena cap, observed in glibc's own accounting of a process whose threads allocate at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from assistant.allocator import VARIABLE, limit_arenas

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
