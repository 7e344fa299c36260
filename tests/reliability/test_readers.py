"""Opening the live build from another process changes none of its files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.index import live_build
from assistant.integrity import check_live

from .conftest import file_hashes

pytestmark = pytest.mark.slow


def test_a_second_process_opening_the_live_build_changes_no_file(built: Path) -> None:
    build = live_build(built)
    assert build is not None
    before = file_hashes(build.path)
    assert "records.npz" in before and "chroma.sqlite3" in before and any(n.endswith(".bin") for n in before)
    # A second process does what a server or an answer process does on start: verify, open, answer.
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from assistant.assistant import Assistant
        from assistant.integrity import check_live
        from assistant.settings import Settings
        settings = Settings(_env_file=None, index_dir=Path({str(built)!r}))
        assert check_live(settings.index_dir).problem is None
        answer = Assistant(settings).ask("What are the fair use factors?")
        assert answer.answered and answer.citations
        print("answered")
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("answered"), done.stderr[-2000:]
    assert file_hashes(build.path) == before
    assert check_live(built).problem is None
