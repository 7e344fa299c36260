"""A grounded help assistant for the article "Is AI Stem Separation Legal?" and its cited sources."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from assistant.assistant import Assistant, build_chain
    from assistant.schemas import Answer, Citation, Escalation, Message
    from assistant.settings import Settings, load_settings

__all__ = ["Answer", "Assistant", "Citation", "Escalation", "Message", "Settings", "build_chain", "load_settings"]

_EXPORTS = {
    "Assistant": "assistant.assistant",
    "build_chain": "assistant.assistant",
    "Answer": "assistant.schemas",
    "Citation": "assistant.schemas",
    "Escalation": "assistant.schemas",
    "Message": "assistant.schemas",
    "Settings": "assistant.settings",
    "load_settings": "assistant.settings",
}


def __getattr__(name: str) -> Any:
    # Exports load lazily so that `import assistant.settings` (the CLI's --help, say)
    # does not pull in torch, Chroma and LangChain.
    if name in _EXPORTS:
        import importlib

        from assistant.allocator import startup_heap

        with startup_heap(freeze=False):  # the engine's modules: long-lived, built without the cyclic collector
            return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'assistant' has no attribute {name!r}")
