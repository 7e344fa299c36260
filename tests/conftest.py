"""Shared fixtures.

The real embedding model and a real Chroma index are built once per test
session into a temporary folder; nothing a test does touches the project's
own ``index/`` or ``data/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

if TYPE_CHECKING:
    from assistant.assistant import Assistant
    from assistant.corpus import Corpus
    from assistant.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytest_plugins = ["server_fixtures"]
"""Its fixtures (the fake-answering ``service``, the live server) are available to every test module."""


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's ASSISTANT_* variables or .env file."""
    for name in list(os.environ):
        if name.startswith("ASSISTANT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(PROJECT_ROOT / "tests")


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("session")


@pytest.fixture(scope="session")
def settings(session_dir: Path) -> Settings:
    """Settings pointing every writable path at the session's temp folder."""
    from assistant.settings import Settings

    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        corpus_dir=PROJECT_ROOT / "corpus",
        index_dir=session_dir / "index",
        data_dir=session_dir / "data",
    )


@pytest.fixture(scope="session")
def corpus(settings: Settings) -> Corpus:
    from assistant.corpus import load_corpus

    return load_corpus(settings.corpus_dir)


@pytest.fixture(scope="session")
def assistant(settings: Settings) -> Iterator[Assistant]:
    """The real assistant: real model, real Chroma index on disk (built once)."""
    from assistant.assistant import Assistant

    yield Assistant(settings)
