"""Benchmark the one server on loopback: /api/ask, the Gradio chat endpoint, and a trivial echo route.

Starts the real server (real assistant and index) in a child process, once with
each number of answer processes asked for (``ASSISTANT_WORKERS``, default 0,
that is answers computed in the server's own process, then 1 and 2), with one extra route,
``POST /api/echo``, that returns its JSON body: the same app, the same
middleware, no work. Then, for 1, 8 and 32 concurrent clients, each
client sends a fixed number of requests (bounded loops); every measurement is
repeated and the table shows the median of the runs' p50, p95, time to the
first piece of the answer (only the chat streams; for the others it is the
whole answer) and throughput.
The rate limit is lifted for the run (all clients share one loopback address).

Before that, the cold start of ``assistant serve`` itself (the command a deployment runs, on the same
index): seconds from launching the process to its first answer from ``POST /api/ask`` and to a ready
``/api/health`` (the chat page is built just after the answerer loads), both polled from the launch, the median
of ``--runs`` starts per number of answer processes (``--cold-runs 0`` skips it).

    .venv/bin/python scripts/bench_server.py        # defaults: 3 runs, 4 requests per client, 0, 1 and 2 workers
    .venv/bin/python scripts/bench_server.py --runs 5 --clients 1,8,32 --requests-per-client 6 --workers 1,2
    .venv/bin/python scripts/bench_server.py --stream-delay 0   # the chat without its typing pace
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "Does Spotify allow stem extraction?",
    "Is it legal to extract stems from a song I don't own?",
    "Can I use stems from Spotify or YouTube in a remix?",
    "When should I talk to a lawyer?",
    "Which countries does this guidance cover?",
    "Is an isolated vocal a derivative work?",
    "Will YouTube Content ID flag separated stems?",
    "What are safer alternatives to stem separation?",
]


def bench_app() -> Any:
    """The server from settings plus the echo route."""
    from fastapi.routing import APIRoute

    from assistant.server import create_app
    from assistant.settings import load_settings

    app = create_app(load_settings())

    async def echo(body: dict[str, object]) -> dict[str, object]:
        return body

    app.add_api_route("/api/echo", echo, methods=["POST"], include_in_schema=False)
    route = app.router.routes.pop()
    assert isinstance(route, APIRoute)
    app.router.routes.insert(0, route)  # ahead of the /api catch-all and the Gradio mount at "/"
    return app


def serve(port: int) -> None:
    """Child mode: :func:`bench_app` on 127.0.0.1:port (answer processes from ASSISTANT_WORKERS)."""
    import uvicorn

    uvicorn.run(bench_app(), host="127.0.0.1", port=port, log_level="warning", server_header=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def serving_processes(pid: int) -> list[int]:
    """The server process and its answer processes (its children that run ``spawn_main``), if any."""
    workers = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            workers.append(int(stat.parent.name))
    return [pid, *workers]


Call = Callable[[httpx.AsyncClient, str], Awaitable[float | None]]
"""Sends one request; returns when the first streamed piece arrived (perf_counter), or None if not streamed."""


async def call_echo(client: httpx.AsyncClient, question: str) -> None:
    response = await client.post("/api/echo", json={"question": question, "history": []})
    response.raise_for_status()


async def call_ask(client: httpx.AsyncClient, question: str) -> None:
    response = await client.post("/api/ask", json={"question": question, "history": []})
    response.raise_for_status()
    if not response.json()["disclaimer"]:
        raise RuntimeError("answer without disclaimer")


def gradio_call(fn_index: int) -> Call:
    """One chat turn through Gradio's queue: join, then read the event stream until it completes."""

    async def call(client: httpx.AsyncClient, question: str) -> float | None:
        session = uuid.uuid4().hex
        first: float | None = None
        updates = 0
        joined = await client.post(
            "/gradio_api/queue/join",
            json={"data": [question, None], "fn_index": fn_index, "session_hash": session, "event_data": None},
        )
        joined.raise_for_status()
        async with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                if message.get("msg") == "process_generating":
                    updates += 1
                    if updates == 2:  # the first update shows the question; the second, the answer's first piece
                        first = time.perf_counter()
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"chat event failed: {message}")
                    return first
        raise RuntimeError("event stream ended before the answer completed")

    return call


@dataclass
class RunResult:
    p50: float
    p95: float
    first_p50: float
    throughput: float
    errors: int


async def run_once(base: str, call: Call, clients: int, per_client: int) -> RunResult:
    latencies: list[float] = []
    firsts: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=2 * clients + 4, max_keepalive_connections=2 * clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker(number: int) -> None:
            nonlocal errors
            for request in range(per_client):
                question = QUESTIONS[(number + request) % len(QUESTIONS)]
                started = time.perf_counter()
                try:
                    first = await call(client, question)
                except (httpx.HTTPError, RuntimeError, KeyError, ValueError):
                    errors += 1
                    continue
                finished = time.perf_counter()
                latencies.append(finished - started)
                firsts.append((first or finished) - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    if not latencies:
        return RunResult(float("nan"), float("nan"), float("nan"), 0.0, errors)
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return RunResult(
        p50=statistics.median(ordered) * 1000,
        p95=p95 * 1000,
        first_p50=statistics.median(firsts) * 1000,
        throughput=len(latencies) / elapsed,
        errors=errors,
    )


def chat_fn_index(base: str) -> int:
    config = httpx.get(f"{base}/config", timeout=30).json()
    for index, dependency in enumerate(config["dependencies"]):
        if dependency.get("api_name") == "chat":
            return int(dependency.get("id", index))
    raise RuntimeError("the chat endpoint is not in the Gradio config")


def wait_ready(base: str, process: subprocess.Popen[bytes] | None, timeout: float = 900, poll: float = 0.5) -> None:
    """Until ``/api/health`` says ready; fails at once if ``process`` (the server, when started here) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            if httpx.get(f"{base}/api/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(poll)
    raise TimeoutError("server not ready")


Row = tuple[str, int, int, float, float, float, float, int]
COLUMNS = ("endpoint", "clients", "req/run", "p50 ms", "p95 ms", "first ms", "req/s", "errors")


def table(rows: list[Row]) -> str:
    """A Markdown table of the results."""
    cells = [list(COLUMNS)]
    for name, clients, count, p50, p95, first, throughput, errors in rows:
        cells.append(
            [
                name,
                str(clients),
                str(count),
                f"{p50:.1f}",
                f"{p95:.1f}",
                f"{first:.1f}",
                f"{throughput:.1f}",
                str(errors),
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]

    def line(row: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


@contextlib.contextmanager
def running_server(
    command: list[str],
    workers: int,
    index_dir: Path | None = None,
    log: Path | None = None,
    poll: float = 0.5,
    wait: bool = True,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``command`` as the server on a free loopback port, wait until it is ready, stop it afterwards.

    ``command`` may contain ``{port}``. The server gets a fresh data folder (its own SQLite store), no
    ASSISTANT_* variable from the caller's environment except those in ``extra_env``, and ``workers``
    answer processes. Yields the base URL and the process (its own process group, stopped with SIGTERM).
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = Path(tempfile.mkdtemp(prefix="bench-data-"))
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASSISTANT_")}
    env.update(
        {
            "ASSISTANT_DATA_DIR": str(data_dir),
            "ASSISTANT_WORKERS": str(workers),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            **(extra_env or {}),
        }
    )
    if index_dir:
        env["ASSISTANT_INDEX_DIR"] = str(index_dir.resolve())  # the server runs in its data folder
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("ab")) if log is not None else subprocess.DEVNULL
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=data_dir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if log is not None else subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            if wait:
                wait_ready(base, process, poll=poll)
            yield base, process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)


def serving_label(workers: int) -> str:
    """How a row names where the answers were computed."""
    return "in the server" if workers == 0 else f"{workers} worker{'s' if workers > 1 else ''}"


def measure(args: argparse.Namespace, workers: int) -> tuple[list[Row], str]:
    """Start a server with ``workers`` processes, run every endpoint at every level, stop it."""
    with running_server(
        [sys.executable, __file__, "--serve", "{port}"],
        workers,
        args.index_dir,
        extra_env={
            **server_settings(args.server_setting),
            "ASSISTANT_RATE_LIMIT_PER_MINUTE": "100000000",
            "ASSISTANT_STREAM_DELAY": str(args.stream_delay),
        },
    ) as (base, process):
        answering = serving_processes(process.pid)
        idle = [memory_mib(pid)[0] for pid in answering]
        endpoints: dict[str, Call] = {
            "echo (POST /api/echo)": call_echo,
            "ask (POST /api/ask)": call_ask,
            "chat (Gradio queue)": gradio_call(chat_fn_index(base)),
        }
        for call in endpoints.values():  # warm caches: every question once through every path
            for _ in range(max(workers, 1)):
                asyncio.run(run_once(base, call, len(QUESTIONS), 1))
        levels = [int(level) for level in args.clients.split(",")]
        rows: list[Row] = []
        for name, call in endpoints.items():
            for clients in levels:
                runs = [asyncio.run(run_once(base, call, clients, args.requests_per_client)) for _ in range(args.runs)]
                rows.append(
                    (
                        f"{name}, {serving_label(workers)}",
                        clients,
                        clients * args.requests_per_client,
                        statistics.median(r.p50 for r in runs),
                        statistics.median(r.p95 for r in runs),
                        statistics.median(r.first_p50 for r in runs),
                        statistics.median(r.throughput for r in runs),
                        sum(r.errors for r in runs),
                    )
                )
        after = [memory_mib(pid) for pid in answering]
    memory = (
        f"ASSISTANT_WORKERS={workers} (server first, then its answer processes): RSS when ready "
        f"{', '.join(f'{m:.0f}' for m in idle)} MiB; after the run {', '.join(f'{m[0]:.0f}' for m in after)} MiB; "
        f"peak {', '.join(f'{m[1]:.0f}' for m in after)} MiB."
    )
    return rows, memory


def server_settings(pairs: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` pairs as the server's environment (``ASSISTANT_NAME``)."""
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--server-setting {pair!r}: expected NAME=VALUE, e.g. CHAT_SESSIONS_KEPT=300")
        found[f"ASSISTANT_{name.strip().upper().removeprefix('ASSISTANT_')}"] = value
    return found


def cold_start(args: argparse.Namespace, workers: int) -> tuple[float, float]:
    """Seconds from launching ``assistant serve`` to its first answer from ``POST /api/ask``, and to a ready
    ``/api/health`` (the chat page up as well), both polled every 20 ms from the launch."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    answered: float | None = None
    # The question is polled every 20 ms: the rate limit is lifted, as for the load below.
    extra = {**server_settings(args.server_setting), "ASSISTANT_RATE_LIMIT_PER_MINUTE": "100000000"}
    with (
        running_server(command, workers, args.index_dir, wait=False, extra_env=extra) as (base, process),
        httpx.Client() as client,
    ):
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}")
            try:
                if answered is None:
                    asked = client.post(f"{base}/api/ask", json={"question": QUESTIONS[0], "history": []}, timeout=60)
                    if asked.status_code == 200:
                        answered = time.perf_counter() - started
                if client.get(f"{base}/api/health", timeout=5).status_code == 200 and answered is not None:
                    return answered, time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.02)
    raise TimeoutError("server not ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement (median reported)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels")
    parser.add_argument(
        "--workers",
        default="0,1,2",
        help="comma-separated answer process counts, each its own server (0: answers in the server's process)",
    )
    parser.add_argument("--requests-per-client", type=int, default=4, help="requests each client sends per run")
    parser.add_argument("--index-dir", type=Path, default=None, help="index folder (default: from settings)")
    parser.add_argument("--stream-delay", type=float, default=0.03, help="chat streaming pause (the default setting)")
    parser.add_argument("--cold-runs", type=int, default=None, help="starts of 'assistant serve' (default: --runs)")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of every started server, as ASSISTANT_NAME (repeatable), e.g. EMBEDDING_THREADS=1",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    try:
        worker_counts = [int(w) for w in args.workers.split(",")]
    except ValueError:
        raise SystemExit(f"--workers {args.workers!r}: expected comma-separated numbers, e.g. 1,2") from None
    cold: list[str] = []
    for workers in worker_counts:
        starts = [cold_start(args, workers) for _ in range(args.runs if args.cold_runs is None else args.cold_runs)]
        if starts:
            cold.append(
                f"| {workers} | {statistics.median(s[0] for s in starts):.2f} | "
                f"{statistics.median(s[1] for s in starts):.2f} | {len(starts)} |"
            )

    rows: list[Row] = []
    memory: list[str] = []
    for workers in worker_counts:
        found, used = measure(args, workers)
        rows.extend(found)
        memory.append(used)

    print(f"\n{os.cpu_count()} CPU(s), stream delay {args.stream_delay} s, loopback.")
    print(f"Medians of {args.runs} runs; in each run every client sends {args.requests_per_client} requests in turn.")
    print(table(rows))
    print("\nServer memory, " + "\n".join(memory))
    if cold:
        print("\nCold start of 'assistant serve' (seconds from launch, medians):")
        print("| answer processes | to first answer (POST /api/ask) | to ready /api/health (chat page up) | starts |")
        print("|---|---|---|---|")
        print("\n".join(cold))


if __name__ == "__main__":
    main()
