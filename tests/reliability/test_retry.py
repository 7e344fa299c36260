"""A rebuild that fails is logged and retried later, each wait longer, never in a tight loop."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from assistant.selfcheck import SelfCheck
from assistant.serving import Serving
from assistant.settings import Settings

pytestmark = pytest.mark.slow


class Service:
    """The :class:`~assistant.selfcheck.Kept` interface with nothing loaded (this unit test's stand-in service)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.problems: list[str] = []

    @property
    def serving(self) -> Serving | None:
        return None

    @property
    def disclaimer(self) -> str:
        return "disclaimer"

    def mark_damaged(self, problem: str) -> None:
        self.problems.append(problem)

    def reload_now(self, reason: str, first: bool = False) -> bool:
        raise AssertionError("nothing is loaded from a damaged index")

    def settle(self) -> None:
        pass


def test_a_failing_rebuild_is_logged_and_retried_with_backoff(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    index_dir = tmp_path / "index"
    (index_dir / "builds" / "damaged").mkdir(parents=True)  # live, but its manifest is gone
    (index_dir / "current").symlink_to(Path("builds") / "damaged")
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        corpus_dir=tmp_path / "missing-corpus",  # so every rebuild fails, in its child process
        index_dir=index_dir,
        data_dir=tmp_path / "data",
        heal_retry_seconds=3,
        heal_retry_max_seconds=10,
    )
    service = Service(settings)
    check = SelfCheck(service)
    with caplog.at_level(logging.INFO, logger="assistant.selfcheck"):
        delays = [check.tick() for _ in range(3)]
    assert delays == [3, 6, 10]  # doubled each time, then capped
    assert service.problems == ["the live build has no readable manifest"] * 3
    failures = [r.getMessage() for r in caplog.records if r.getMessage().startswith("The rebuild failed")]
    assert failures == [
        "The rebuild failed (exit code 1, attempt 1); trying again in 3 s",
        "The rebuild failed (exit code 1, attempt 2); trying again in 6 s",
        "The rebuild failed (exit code 1, attempt 3); trying again in 10 s",
    ]
    assert (index_dir / "current").resolve() == (index_dir / "builds" / "damaged").resolve()  # nothing swapped in
