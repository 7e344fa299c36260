"""A rebuild and reload under load: no request fails, and each answer comes wholly from one build.

A real server answers about 20 questions a second for at least a minute. Meanwhile a maintainer changes one
sentence of its corpus that answers quote, and the same sentence in the question bank's gold spans (a gold
span must be a verbatim slice of the corpus). The server's self-check sees that the live build no longer
matches the corpus, rebuilds in a child process (index and decisions), swaps the new build in and reloads.
Every answer names its build (``X-Index-Build``), and every quote in it must be in that build's records: the
changed sentence only in the new build's answers, the old wording only in the old build's.
"""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant.bank import bank_dir, bank_files
from assistant.index import COLLECTION, PARAGRAPHS, SENTENCES
from assistant.index import read_snapshot as read_records
from assistant.integrity import check_live, read_build

from .conftest import alive, copy_index

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]
QUESTION = "Does Spotify allow extracting stems from its songs?"
OLD = "streaming platforms generally prohibit using their content"
NEW = "streaming platforms generally forbid using their content"
"""One sentence of the article before and after the edit; the question's answer quotes it."""
RATE = 20.0
"""Questions per second sent, on a fixed schedule (not waiting for answers)."""
MIN_SECONDS = 60.0
SERVED_AFTER_SWAP = 10.0
"""Seconds of load kept on after the first answer from the new build."""
LONGEST = 900.0
"""Bound on the whole run: the rebuild refits the decisions (about 90 s on two cores, longer beside the load)."""


def build_texts(index_dir: Path, build: str) -> list[str]:
    found = read_build(index_dir / "builds" / build)
    assert found is not None, build
    records = read_records(found)
    return [text for name in (COLLECTION, SENTENCES, PARAGRAPHS) for text in records[name]["documents"]]


def test_rebuild_and_swap_under_load(built: Path, tmp_path: Path, server_on: Any) -> None:
    corpus_dir = tmp_path / "corpus"
    shutil.copytree(PROJECT_ROOT / "corpus", corpus_dir)
    article = corpus_dir / "article.md"
    assert article.read_text(encoding="utf-8").count(OLD) == 1
    bank = shutil.copytree(bank_dir(), tmp_path / "bank")
    labelled = [path for path in bank_files(bank) if OLD in path.read_text(encoding="utf-8")]
    assert labelled, "the bank labels the changed sentence, so the rebuild must refit against the edited bank"
    index_dir = copy_index(built, tmp_path / "index")
    # A queue long enough that a slow shared machine delays answers rather than refusing them: the test is
    # about the swap, not capacity.
    server = server_on(
        index_dir, ASSISTANT_CORPUS_DIR=str(corpus_dir), ASSISTANT_BANK_DIR=str(bank), ASSISTANT_QUEUE_MAX_SIZE="2000"
    )
    old_build = httpx.get(f"{server.url}/api/health", timeout=30).json()["index"]["build"]

    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=32))
    results: list[tuple[float, int, str | None, dict[str, Any] | None]] = []
    lock = threading.Lock()

    def ask() -> None:
        sent = time.monotonic()
        try:
            reply = client.post(f"{server.url}/api/ask", json={"question": QUESTION})
            outcome = (sent, reply.status_code, reply.headers.get("X-Index-Build"), reply.json())
        except (httpx.HTTPError, ValueError) as error:
            outcome = (sent, 0, None, {"error": repr(error)})
        with lock:
            results.append(outcome)

    start = time.monotonic()
    first_new: float | None = None
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=32) as pool:
        sent = 0
        while True:
            now = time.monotonic()
            if sent == int(3 * RATE):  # three seconds of load on the old build, then the bank and the corpus change
                for path in [*labelled, article]:  # each file whole, as a deployment replaces it
                    edited = path.with_suffix(".new")
                    edited.write_text(path.read_text(encoding="utf-8").replace(OLD, NEW), encoding="utf-8")
                    edited.replace(path)
            if first_new is None:
                with lock:
                    first_new = next((t for t, _, build, _ in results if build not in (None, old_build)), None)
            elapsed = now - start
            if elapsed >= MIN_SECONDS and first_new is not None and now - first_new >= SERVED_AFTER_SWAP:
                break
            assert elapsed < LONGEST, f"no answer from a new build within {LONGEST:.0f} s"
            assert alive(server)
            futures.append(pool.submit(ask))
            sent += 1
            time.sleep(max(0.0, start + sent / RATE - time.monotonic()))
        for future in futures:
            future.result()
    client.close()
    seconds = time.monotonic() - start

    failed = [r for r in results if r[1] != 200]
    assert failed == [], failed[:5]
    builds = {build for _, _, build, _ in results}
    new_build = check_live(index_dir).build
    assert new_build is not None and new_build.path.name != old_build
    assert builds == {old_build, new_build.path.name}, builds
    texts = {build: build_texts(index_dir, build) for build in builds}
    assert any(OLD in t for t in texts[old_build]) and not any(OLD in t for t in texts[new_build.path.name])
    quoted = {build: 0 for build in builds}
    for _, _, build, body in results:
        assert build is not None and body is not None
        for citation in body["citations"]:
            assert any(citation["quote"] in text for text in texts[build]), (build, citation["quote"][:80])
            quoted[build] += (OLD if build == old_build else NEW) in citation["quote"]
    assert all(quoted.values()), quoted  # each build's own wording was quoted by its own answers
    print(f"{len(results)} questions in {seconds:.0f} s ({len(results) / seconds:.1f}/s), 0 errors; {quoted}")
