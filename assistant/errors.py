"""Domain errors.

Every :class:`AssistantError` carries a message written for the person using
the assistant: it says what went wrong and what to do. Library code raises
them; the edges (CLI, UI, HTTP API) turn them into exit codes, ``gr.Error``
or HTTP statuses, once each.
"""

from __future__ import annotations


class AssistantError(Exception):
    """Base class; ``str(error)`` is safe to show to a user."""

    status_code = 500


class InputError(AssistantError):
    """The question or history cannot be used as given."""

    status_code = 400


class InputTooLongError(InputError):
    """The question is longer than the configured limit."""

    status_code = 413


class CorpusError(AssistantError):
    """The corpus folder is missing a file or a file does not parse."""


class IndexNotReadyError(AssistantError):
    """There is no usable index yet (being built, or failed to build)."""

    status_code = 503


class IndexDamagedError(IndexNotReadyError):
    """The live index failed its integrity check; it is being rebuilt and nothing is answered from it."""


class IndexBusyError(IndexNotReadyError):
    """Another process holds the index build lock for too long."""


class DatasetError(AssistantError):
    """An eval dataset line is malformed; the message names the line and field."""

    status_code = 400


class StoreError(AssistantError):
    """The database that keeps answers, feedback and the question log cannot be opened or written."""

    status_code = 503
