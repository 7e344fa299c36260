"""A damaged index is refused, reported and rebuilt while the server keeps running.

One real server on a copy of the session's index. Each case damages the live build as a disk fault or a stray
process might, then checks: the server stays up; ``/api/health`` says "index damaged" (503, JSON, with the
disclaimer, without paths or exception text); every question gets the maintenance reply until a rebuilt build
is live, and none is answered from the damaged build; and the server ends healthy on a new build that passes
its checks, without anyone restarting it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from server_fixtures import ServerProcess

from assistant.corpus import Corpus
from assistant.integrity import check_live
from assistant.service import MAINTENANCE

from .conftest import REBUILT_WITHIN, alive, assert_no_leak, copy_index, start_server

pytestmark = pytest.mark.slow

QUESTION = "Does Spotify allow extracting stems from its songs?"


def _segment_file(build: Path, name: str) -> Path:
    found = sorted(build.glob(f"*/{name}"))
    assert found, f"no {name} in {build}"
    return max(found, key=lambda p: p.stat().st_size)


def random_bytes_into_bin(build: Path) -> None:
    target = _segment_file(build, "data_level0.bin")
    with target.open("r+b") as handle:
        handle.seek(target.stat().st_size // 3)
        handle.write(os.urandom(4096))


def truncate_half(path: Path) -> None:
    with path.open("r+b") as handle:
        handle.truncate(path.stat().st_size // 2)


def flip_byte(path: Path, keep_time: bool = False) -> None:
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    with path.open("r+b") as handle:  # in place: same file, same size
        handle.write(data)
    if keep_time:  # as bit rot would: nothing but the content changes
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@dataclass(frozen=True)
class Damage:
    name: str
    apply: Callable[[Path], None]
    silent: bool = False
    """True when no file's size or time changes: only the periodic hash can notice."""


CASES = [
    Damage("random bytes in a Chroma data_level0.bin", random_bytes_into_bin),
    Damage("Chroma .bin truncated to half", lambda b: truncate_half(_segment_file(b, "data_level0.bin"))),
    Damage("chroma.sqlite3 truncated to half", lambda b: truncate_half(b / "chroma.sqlite3")),
    Damage("snapshot with one byte flipped", lambda b: flip_byte(b / "records.npz")),
    Damage("snapshot with one byte flipped, time kept", lambda b: flip_byte(b / "records.npz", True), silent=True),
    Damage("snapshot truncated", lambda b: truncate_half(b / "records.npz")),
    Damage("snapshot missing", lambda b: (b / "records.npz").unlink()),
    Damage("manifest missing", lambda b: (b / "manifest.json").unlink()),
]


@pytest.fixture(scope="module")
def healing(built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    tmp = tmp_path_factory.mktemp("damage")
    index_dir = copy_index(built, tmp / "index")
    server = start_server(index_dir, tmp, "server")
    yield server, index_dir
    server.stop()


def ask(server: ServerProcess) -> httpx.Response:
    return httpx.post(f"{server.url}/api/ask", json={"question": QUESTION}, timeout=60)


def health(server: ServerProcess) -> httpx.Response:
    return httpx.get(f"{server.url}/api/health", timeout=30)


def assert_maintenance(response: httpx.Response, disclaimer: str) -> None:
    assert response.status_code == 503, response.text[:300]
    body = response.json()
    assert body["error"] == "index_damaged" and body["message"] == MAINTENANCE
    assert body["disclaimer"] == disclaimer
    assert "X-Index-Build" not in response.headers
    assert_no_leak(response)


def assert_damaged_health(response: httpx.Response, disclaimer: str) -> None:
    assert response.status_code == 503 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["status"] == "index damaged" and body["ready"] is False
    assert body["message"] == MAINTENANCE and body["disclaimer"] == disclaimer
    assert_no_leak(response)


@pytest.mark.parametrize("damage", CASES, ids=[case.name for case in CASES])
def test_a_damaged_index_is_refused_then_rebuilt(
    healing: tuple[ServerProcess, Path], damage: Damage, corpus: Corpus
) -> None:
    server, index_dir = healing
    corpus_disclaimer = corpus.disclaimer
    start = health(server)
    assert start.status_code == 200, start.text[:300]
    damaged_build = start.json()["index"]["build"]
    assert ask(server).headers["X-Index-Build"] == damaged_build

    damage.apply(index_dir / "builds" / damaged_build)
    if damage.silent:  # the next periodic hash finds it
        deadline = time.monotonic() + 30
        while health(server).json()["status"] != "index damaged":
            assert time.monotonic() < deadline, "the periodic check did not notice the damage"
            time.sleep(0.2)
    first = ask(server)
    assert_maintenance(first, corpus_disclaimer)  # at once: the very next question is refused
    assert_damaged_health(health(server), corpus_disclaimer)

    refused = answered_elsewhere = 0
    deadline = time.monotonic() + REBUILT_WITHIN
    while True:
        assert alive(server), "the server stopped"
        assert time.monotonic() < deadline, f"not healthy {REBUILT_WITHIN:.0f} s after the damage"
        state = health(server)
        reply = ask(server)
        if reply.status_code == 503:
            assert_maintenance(reply, corpus_disclaimer)
            refused += 1
        else:
            assert reply.status_code == 200, reply.text[:300]
            assert reply.headers["X-Index-Build"] != damaged_build  # never from the damaged build
            answered_elsewhere += 1
        if state.status_code == 200 and reply.status_code == 200:
            break
        assert_damaged_health(state, corpus_disclaimer)
        time.sleep(1.0)
    assert refused >= 1

    healed = health(server).json()
    assert healed["status"] == "ok" and healed["index"]["build"] != damaged_build
    final = ask(server)
    assert final.status_code == 200 and final.headers["X-Index-Build"] == healed["index"]["build"]
    assert final.json()["citations"] and final.json()["disclaimer"] == corpus_disclaimer
    verdict = check_live(index_dir)
    assert verdict.problem is None and verdict.build is not None
    assert verdict.build.path.name == healed["index"]["build"]
    assert alive(server)
