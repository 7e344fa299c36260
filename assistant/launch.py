"""Start the one server, its first answer process before the web stack (``assistant serve``, ``python app.py``).

Importing the web stack and building the app take about a second of one core; the first answer process imports
the engine and opens the build on the other core meanwhile, and the pool takes it over (:mod:`assistant.pool`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assistant.settings import Settings


def serve(settings: Settings, host: str | None = None, port: int | None = None) -> None:
    """Serve chat, widget and API until interrupted, as ``settings`` say (``host`` and ``port`` win)."""
    from assistant import pool
    from assistant.allocator import limit_arenas, startup_heap

    early = settings.workers > 0
    if early:
        limit_arenas(settings.malloc_arenas)  # before the pool's first thread, as the server would
        pool.start_early(settings)
    try:
        with startup_heap(freeze=False):  # the web stack's modules; the answerer's start freezes them with its own
            from assistant.server import run_server

        run_server(settings, host=host, port=port)
    finally:
        if early:
            pool.discard_early()
