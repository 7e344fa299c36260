"""How many malloc arenas a serving process may keep (glibc).

glibc gives each new thread that allocates its own malloc arena, up to eight per core, and returns little of
their freed memory to the system. The server runs many threads (uvicorn's, Gradio's, the answer slots), so its
resident memory kept rising through a long soak although the Python heap, traced, stayed bounded. In a
25-minute soak at the design load beside an uncapped server (same code, same questions, at the same time), the
server capped at two arenas ended at 677 MiB against 843, at the same latency (``docs/performance.md``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("assistant.allocator")

M_ARENA_MAX = -8
"""``mallopt``'s parameter for the arena cap (``M_ARENA_MAX`` in glibc's ``malloc.h``)."""
VARIABLE = "MALLOC_ARENA_MAX"


def limit_arenas(arenas: int) -> bool:
    """Cap malloc arenas at ``arenas`` in this process and in the processes it starts; True when applied.

    0 leaves glibc's default. A cap already set in the environment is kept (glibc applied it at start). Where
    the C library is not glibc nothing changes.
    """
    if arenas <= 0 or VARIABLE in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, TypeError, AttributeError):
        log.info("No glibc mallopt here; malloc arenas left as they are")
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if not mallopt(M_ARENA_MAX, arenas):
        return False
    os.environ[VARIABLE] = str(arenas)  # read by glibc in every process started from here (answer processes)
    return True
