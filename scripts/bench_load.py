"""Load, soak and disconnect benchmark of the one server on loopback: the chat (Gradio's queue) and /api/ask.

Starts the real server (``assistant serve``, default settings, the real index; ``--workers`` answer
processes) unless ``--url`` names one already running, then, in order:

1. **Bounded load**: 1, 8, 32 and 64 concurrent clients (``--clients``), each sending
   ``--requests-per-client`` questions in turn, once through ``POST /api/ask`` and once through the chat.
2. **Soak at the design load** for ``--soak-seconds`` (default 10 minutes): questions arrive at random
   (a Poisson process) at ``--design-rate`` per second, a ``--chat-share`` of them through the chat and the
   rest through the API, from ``design-rate x --think-seconds`` simulated people, each on its own loopback
   address and in conversations of ``--turns`` questions (the chat keeps its session; the API is sent the
   conversation's earlier turns as history).
3. **Twice the design load** for ``--double-seconds``: the same, at twice the rate from twice the people.
4. **Disconnect storm**: ``--storm`` clients start within ``--storm-seconds``; a ``--chat-share`` of them
   join the chat, read its event stream until the answer's first piece arrives and close the connection;
   the others send ``POST /api/ask`` over a raw socket and reset it before the answer, after a random wait
   of up to the one-client p50 measured in step 1. Then the server is asked as in step 1 with 8 clients.

Every question in a run is different, so no cache answers one twice: the eval sets' questions
(``evals/*.jsonl``), then questions made from the corpus's section headings and from its sentences
(``--questions`` explains the templates), then eval questions paired with a section heading.

Each client speaks from its own loopback address (127.1.0.1, 127.1.0.2, ...), so the server's per-client
rate limit stays at its default, as it would be for real visitors. The figures: p50, p95 and p99 per endpoint
and phase, errors by status, the share of completed answers that carry the article's disclaimer verbatim
(the text the server itself sends in its error bodies; it is checked against the corpus's), and the RSS of
the server and its answer processes sampled every ``--sample-seconds`` (psutil), with its slope per phase
(MiB per minute; flat means no leak). With the embedded server it also reads the store afterwards: every
issued answer kept, and whether each one's reply carries the disclaimer. It prints figures and asserts
nothing.

    .venv/bin/python scripts/bench_load.py                                   # the whole run: 14 minutes or more
    .venv/bin/python scripts/bench_load.py --soak-seconds 60 --double-seconds 30
    .venv/bin/python scripts/bench_load.py --url http://127.0.0.1:7860 --server-pid 1234
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import resource
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
from bench_server import chat_fn_index, running_server, server_settings, wait_ready
from gradio_client.utils import apply_diff
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from assistant.chunking import split_sentences
from assistant.corpus import Corpus, load_corpus
from assistant.settings import load_settings
from assistant.ui import message_text

ROOT = Path(__file__).resolve().parent.parent
console = Console()

TIMEOUT = 120.0
"""Seconds a client waits for a whole answer before it counts the request as a timeout."""
SENTENCE_WORDS = 18
"""Words of a corpus sentence quoted in a question made from it: enough to name its claim, short as a question."""


# ---------------------------------------------------------------- questions


def eval_questions(evals_dir: Path) -> list[str]:
    """The questions of every eval set, in file order."""
    found = []
    for path in sorted(evals_dir.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                found.append(str(json.loads(line)["question"]))
    return found


def corpus_questions(corpus: Corpus) -> tuple[list[str], list[str]]:
    """Questions made from the corpus: two per section heading, three per sentence of six words or more."""
    from_headings, from_sentences = [], []
    for section in corpus.sections:
        where = section.source.title
        from_headings += [
            f"What does {where} say under '{section.heading}'?",
            f"How does '{section.heading}' apply to AI stem separation?",
        ]
        for sentence in split_sentences(section.text):
            words = sentence.split()
            if len(words) < 6:
                continue
            quoted = " ".join(words[:SENTENCE_WORDS]).rstrip(".,;:")
            from_sentences += [
                f'What does "{quoted}" mean for someone separating stems?',
                f'Where does {where} say "{quoted}"?',
                f"Is it true that {quoted[0].lower() + quoted[1:]}?",
            ]
    return from_headings, from_sentences


def unique_questions(corpus: Corpus, evals_dir: Path, seed: int) -> Iterator[str]:
    """Every question once: eval questions, then heading and sentence questions, then eval x heading pairs."""
    rng = random.Random(seed)
    evals = eval_questions(evals_dir)
    headings, sentences = corpus_questions(corpus)
    rng.shuffle(evals)
    made = headings + sentences
    rng.shuffle(made)
    seen: set[str] = set()

    def pairs() -> Iterator[str]:
        for question in evals:
            for section in corpus.sections:
                yield f"{question} And how does '{section.heading}' bear on that?"

    for question in (*evals, *made, *pairs()):
        key = " ".join(question.lower().split())
        if key not in seen:
            seen.add(key)
            yield question
    raise RuntimeError(f"all {len(seen)} distinct questions were used; shorten the run")


# ---------------------------------------------------------------- outcomes


@dataclass
class Outcome:
    """One question's fate: which endpoint, how long, what came back, and whether it carried the disclaimer."""

    endpoint: str
    status: str
    latency: float | None = None
    disclaimer: bool | None = None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Phase:
    """The outcomes of one part of the run, its wall time, and what the client side itself declined to send."""

    name: str
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    not_sent: int = 0
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.ended = time.monotonic()


def percentiles_ms(latencies: list[float]) -> tuple[float, float, float]:
    if not latencies:
        return math.nan, math.nan, math.nan
    p50, p95, p99 = np.percentile(np.array(latencies) * 1000, [50, 95, 99])
    return float(p50), float(p95), float(p99)


# ---------------------------------------------------------------- clients


class Addresses:
    """A distinct loopback source address per client (127.1.0.1, 127.1.0.2, ...) when the server is on loopback."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._numbers = count(1)

    def next(self) -> str | None:
        if not self.enabled:
            return None
        n = next(self._numbers)
        return f"127.{1 + n // 62500}.{n // 250 % 250}.{n % 250 + 1}"


def http_client(base: str, address: str | None) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address) if address else None
    return httpx.AsyncClient(base_url=base, timeout=TIMEOUT, transport=transport)


def failure(error: BaseException) -> str:
    if isinstance(error, httpx.TimeoutException | asyncio.TimeoutError):
        return "timeout"
    if isinstance(error, httpx.TransportError):
        return f"connection ({type(error).__name__})"
    return type(error).__name__


@dataclass
class Server:
    """Where the server is, its chat endpoint, and the disclaimer it sends."""

    base: str
    fn_index: int
    disclaimer: str
    chat_disclaimer: str


async def ask_api(client: httpx.AsyncClient, server: Server, question: str, history: list[dict[str, Any]]) -> Outcome:
    """``POST /api/ask``; a 200 counts as carrying the disclaimer when its field and its rendered reply hold it."""
    started = time.perf_counter()
    try:
        response = await client.post("/api/ask", json={"question": question, "history": history})
    except (httpx.HTTPError, OSError) as error:
        return Outcome("api", failure(error))
    latency = time.perf_counter() - started
    if response.status_code != 200:
        return Outcome("api", str(response.status_code), latency)
    body = response.json()
    carried = body.get("disclaimer") == server.disclaimer and server.disclaimer in body.get("rendered", "")
    history += [
        {"role": "user", "content": question},
        {"role": "assistant", "content": body["answer"], "answer_id": body["answer_id"]},
    ]
    return Outcome("api", "200", latency, carried)


async def ask_chat(
    client: httpx.AsyncClient, server: Server, question: str, session: str, drop_mid_answer: bool = False
) -> Outcome:
    """One chat turn as the page sends it: join the queue, read the event stream until the turn completes.

    A completed turn counts as carrying the disclaimer when the last chat message shows it (as the page escapes
    it). With ``drop_mid_answer`` the stream is closed as soon as the answer's first piece has arrived.
    """
    started = time.perf_counter()
    try:
        joined = await client.post(
            "/gradio_api/queue/join",
            json={"data": [question, None], "fn_index": server.fn_index, "session_hash": session, "event_data": None},
        )
        if joined.status_code != 200:
            return Outcome("chat", f"join {joined.status_code}", time.perf_counter() - started)
        updates = 0
        values: list[Any] | None = None
        async with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
            if stream.status_code != 200:
                return Outcome("chat", f"stream {stream.status_code}", time.perf_counter() - started)
            async for line in stream.aiter_lines():
                if not line.startswith("data:"):
                    continue
                message = json.loads(line[5:])
                kind = message.get("msg")
                if kind == "queue_full":
                    return Outcome("chat", "queue full", time.perf_counter() - started)
                if kind in {"process_generating", "process_completed"}:
                    output = message.get("output") or {}
                    data = output.get("data")
                    if kind == "process_completed" and not message.get("success"):
                        return Outcome("chat", f"event error: {str(output.get('error'))[:60]}")
                    if data is not None:  # the first update and the completion carry values; the rest, diffs
                        if values is None or kind == "process_completed":
                            values = list(data)
                        else:
                            values = [apply_diff(old, new) for old, new in zip(values, data, strict=True)]
                    updates += 1
                    if drop_mid_answer and updates == 2:
                        return Outcome("chat", "dropped mid-answer", time.perf_counter() - started)
                    if kind == "process_completed":
                        latency = time.perf_counter() - started
                        messages = values[0] if values else []
                        last = message_text(messages[-1]) if messages else ""
                        return Outcome("chat", "200", latency, server.chat_disclaimer in last)
        return Outcome("chat", "stream ended early", time.perf_counter() - started)
    except (httpx.HTTPError, OSError) as error:
        return Outcome("chat", failure(error))


# ---------------------------------------------------------------- load shapes


@dataclass
class Person:
    """A simulated visitor: one loopback address and HTTP client, conversations of up to ``turns`` questions.

    Each conversation uses one endpoint (a visitor is on the chat page or in the widget), drawn when it starts.
    """

    client: httpx.AsyncClient
    turns: int
    chat_share: float
    rng: random.Random
    endpoint: str = "api"
    session: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    asked: int = 0

    async def ask(self, server: Server, question: str) -> Outcome:
        if self.asked % self.turns == 0:
            self.endpoint = "chat" if self.rng.random() < self.chat_share else "api"
            self.session, self.history = uuid.uuid4().hex, []
        self.asked += 1
        if self.endpoint == "chat":
            return await ask_chat(self.client, server, question, self.session)
        return await ask_api(self.client, server, question, self.history)


class Tracker:
    """Where outcomes go: the phase's list and the progress bar."""

    def __init__(self, phase: Phase, progress: Progress, total: float | None) -> None:
        self.phase = phase
        self.progress = progress
        self.task = progress.add_task(phase.name, total=total)

    def add(self, outcome: Outcome) -> None:
        self.phase.outcomes.append(outcome)
        self.progress.advance(self.task)


async def closed_loop(
    server: Server,
    track: Tracker,
    endpoint: str,
    clients: int,
    per_client: int,
    questions: Iterator[str],
    addresses: Addresses,
) -> None:
    """``clients`` clients at once, each asking ``per_client`` new questions in turn (each a new conversation)."""

    async def client(number: int) -> None:
        async with http_client(server.base, addresses.next()) as http:
            for _ in range(per_client):
                question = next(questions)
                if endpoint == "chat":
                    track.add(await ask_chat(http, server, question, uuid.uuid4().hex))
                else:
                    track.add(await ask_api(http, server, question, []))

    await asyncio.gather(*(client(n) for n in range(clients)))


async def open_loop(
    server: Server,
    track: Tracker,
    rate: float,
    seconds: float,
    people: int,
    args: argparse.Namespace,
    questions: Iterator[str],
    addresses: Addresses,
) -> None:
    """Questions arriving at random (Poisson, ``rate`` per second) for ``seconds``, each from the visitor idle longest.

    A question whose every visitor is still waiting for an answer is not sent and counted as such (the server is
    then slower than the visitors' pace); the load stays bounded by the number of visitors.
    """
    rng = random.Random(args.seed)
    crowd = [
        Person(http_client(server.base, addresses.next()), args.turns, args.chat_share, rng) for _ in range(people)
    ]
    idle = deque(crowd)
    pending: set[asyncio.Task[Outcome]] = set()
    started = time.perf_counter()
    due = 0.0
    try:
        while True:
            due += rng.expovariate(rate)
            if due >= seconds:
                break
            await asyncio.sleep(max(0.0, started + due - time.perf_counter()))
            if not idle:
                track.phase.not_sent += 1
                continue
            person = idle.popleft()
            task = asyncio.create_task(person.ask(server, next(questions)))
            pending.add(task)

            def finished(task: asyncio.Task[Outcome], person: Person = person) -> None:
                pending.discard(task)
                idle.append(person)
                error = task.exception()
                track.add(task.result() if error is None else Outcome(person.endpoint, type(error).__name__))

            task.add_done_callback(finished)
        if pending:
            await asyncio.wait(pending)
    finally:
        await asyncio.gather(*(person.client.aclose() for person in crowd))


async def drop_api(server: Server, address: str | None, question: str, wait: float) -> Outcome:
    """``POST /api/ask`` over a raw socket, reset (RST) after ``wait`` seconds, before reading anything."""
    parts = urlsplit(server.base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps({"question": question, "history": []}).encode()
    head = (
        f"POST /api/ask HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    started = time.perf_counter()
    try:
        if address:
            sock.bind((address, 0))
        await loop.sock_connect(sock, (socket.gethostbyname(host), port))
        await loop.sock_sendall(sock, head.encode() + body)
        await asyncio.sleep(wait)
        try:
            seen = sock.recv(64, socket.MSG_PEEK)
        except BlockingIOError:
            seen = b""
        if seen:
            status = seen.split(b" ", 2)[1].decode(errors="replace") if seen.startswith(b"HTTP/") else "?"
            return Outcome("api", f"answered {status} before the drop", time.perf_counter() - started)
        return Outcome("api", "dropped mid-request", time.perf_counter() - started)
    except OSError as error:
        return Outcome("api", failure(error))
    finally:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


async def disconnect_storm(
    server: Server,
    track: Tracker,
    args: argparse.Namespace,
    api_wait: float,
    questions: Iterator[str],
    addresses: Addresses,
) -> None:
    """``args.storm`` clients starting within ``args.storm_seconds``; each drops its connection mid-answer."""
    rng = random.Random(args.seed + 1)

    async def one() -> None:
        await asyncio.sleep(rng.uniform(0, args.storm_seconds))
        address, question = addresses.next(), next(questions)
        if rng.random() < args.chat_share:
            async with http_client(server.base, address) as http:
                track.add(await ask_chat(http, server, question, uuid.uuid4().hex, drop_mid_answer=True))
        else:
            track.add(await drop_api(server, address, question, rng.uniform(0, api_wait)))

    await asyncio.gather(*(one() for _ in range(args.storm)))


# ---------------------------------------------------------------- memory


class MemorySampler(threading.Thread):
    """The RSS of the server process and all its children (answer processes), every ``every`` seconds."""

    def __init__(self, pid: int, every: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.root = psutil.Process(pid)
        self.every = every
        self.phase = "ready"
        self.samples: list[tuple[float, str, float, int]] = []
        self._halt = threading.Event()

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for process in processes:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        self.samples.append((time.monotonic(), self.phase, total / 2**20, len(processes)))

    def run(self) -> None:
        self.sample()
        while not self._halt.wait(self.every):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)
        self.sample()


def slope_mib_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS over time, MiB per minute (nan with fewer than three samples)."""
    if len(points) < 3:
        return math.nan
    return statistics.linear_regression([t / 60 for t, _ in points], [m for _, m in points]).slope


def listening_pid(port: int) -> int | None:
    """The process listening on ``port`` on this machine, if this user may see it."""
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port:
                return int(connection.pid)
    return None


# ---------------------------------------------------------------- report


def status_counts(outcomes: list[Outcome]) -> str:
    counts = Counter(o.status for o in outcomes if o.status != "200")
    return ", ".join(f"{status}: {n}" for status, n in counts.most_common()) or "0"


def load_table(phases: list[Phase]) -> Table:
    table = Table(title="Latency, errors and the disclaimer (whole answers; ms)")
    for column in ("phase", "endpoint", "sent", "answered", "p50", "p95", "p99", "answers/s", "errors by status"):
        table.add_column(column, justify="left" if column in {"phase", "endpoint", "errors by status"} else "right")
    table.add_column("disclaimer verbatim", justify="right")
    for phase in phases:
        seconds = (phase.ended or time.monotonic()) - phase.started
        for endpoint in ("api", "chat"):
            outcomes = [o for o in phase.outcomes if o.endpoint == endpoint]
            if not outcomes:
                continue
            done = [o for o in outcomes if o.status == "200"]
            p50, p95, p99 = percentiles_ms([o.latency for o in done if o.latency is not None])
            carried = sum(1 for o in done if o.disclaimer)
            share = f"{carried}/{len(done)} ({100 * carried / len(done):.1f} %)" if done else "-"
            table.add_row(
                phase.name,
                "POST /api/ask" if endpoint == "api" else "chat (Gradio)",
                str(len(outcomes)),
                str(len(done)),
                f"{p50:.1f}",
                f"{p95:.1f}",
                f"{p99:.1f}",
                f"{len(done) / seconds:.1f}",
                status_counts(outcomes),
                share,
            )
    return table


def timeline_table(phase: Phase, sampler: MemorySampler | None, buckets: int = 10) -> Table:
    """The phase cut into ``buckets`` equal spans: answers, p50/p95, errors and RSS in each."""
    end = phase.ended or time.monotonic()
    width = max(1e-9, (end - phase.started) / buckets)
    table = Table(title=f"{phase.name}, over time")
    for column in ("from s", "answered", "p50 ms", "p95 ms", "errors", "RSS MiB"):
        table.add_column(column, justify="right")
    for b in range(buckets):
        low, high = phase.started + b * width, phase.started + (b + 1) * width
        inside = [o for o in phase.outcomes if low <= o.at < high]
        done = [o.latency for o in inside if o.status == "200" and o.latency is not None]
        p50, p95, _ = percentiles_ms(done)
        rss = [m for t, _, m, _ in (sampler.samples if sampler else []) if low <= t < high]
        table.add_row(
            f"{b * width:.0f}",
            str(len(done)),
            f"{p50:.1f}",
            f"{p95:.1f}",
            str(sum(1 for o in inside if o.status != "200")),
            f"{statistics.fmean(rss):.0f}" if rss else "-",
        )
    return table


def memory_table(sampler: MemorySampler, phases: list[Phase]) -> Table:
    table = Table(title=f"Server RSS (server process and its children, MiB), sampled every {sampler.every:g} s")
    for column in ("phase", "samples", "first", "last", "min", "max", "slope MiB/min"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase in phases:
        points = [(t, m) for t, name, m, _ in sampler.samples if name == phase.name]
        if not points:
            continue
        values = [m for _, m in points]
        slope = f"{slope_mib_per_minute(points):+.2f}"
        if phase.name.startswith("soak"):
            # A leak keeps its slope; bounded state (the chat's sessions) levels off, so the last quarter says more.
            quarters = [points[k * len(points) // 4 : (k + 1) * len(points) // 4] for k in range(4)]
            slope += " (by quarter " + ", ".join(f"{slope_mib_per_minute(q):+.2f}" for q in quarters) + ")"
        table.add_row(
            phase.name,
            str(len(points)),
            f"{values[0]:.0f}",
            f"{values[-1]:.0f}",
            f"{min(values):.0f}",
            f"{max(values):.0f}",
            slope,
        )
    return table


def storm_table(phase: Phase) -> Table:
    table = Table(title=f"{phase.name}: what each client saw before it dropped its connection")
    table.add_column("endpoint")
    table.add_column("outcome")
    table.add_column("clients", justify="right")
    for (endpoint, status), n in sorted(Counter((o.endpoint, o.status) for o in phase.outcomes).items()):
        table.add_row("POST /api/ask" if endpoint == "api" else "chat (Gradio)", status, str(n))
    return table


def stored_answers(data_dir: Path, disclaimer: str) -> str:
    """What the store kept: issued answers, how many replies carry the disclaimer verbatim, question-log lines."""
    import sqlalchemy as sa

    from assistant.store import DB_NAME, answers, question_log

    engine = sa.create_engine(f"sqlite:///{data_dir / DB_NAME}")
    try:
        with engine.connect() as connection:
            replies = [row.reply for row in connection.execute(sa.select(answers.c.reply))]
            logged = connection.execute(sa.select(sa.func.count()).select_from(question_log)).scalar_one()
    finally:
        engine.dispose()
    carried = sum(
        1
        for reply in replies
        if isinstance(reply, dict) and reply.get("disclaimer") == disclaimer and disclaimer in reply.get("rendered", "")
    )
    share = 100 * carried / len(replies) if replies else math.nan
    return (
        f"The store kept {len(replies)} issued answers, {carried} ({share:.1f} %) of them with the disclaimer "
        f"verbatim in the reply kept; {logged} question-log lines."
    )


def server_log_summary(log: Path) -> str:
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    tracebacks = sum(1 for line in lines if line.startswith("Traceback"))
    errors = [line for line in lines if line.startswith(("ERROR", "CRITICAL"))]
    shown = "; ".join(dict.fromkeys(line[:120] for line in errors[:50]))
    return f"Server log ({log}): {tracebacks} tracebacks, {len(errors)} ERROR lines{': ' + shown if shown else ''}."


# ---------------------------------------------------------------- main


def exposed_disclaimer(base: str) -> str:
    """The disclaimer the server sends with every error (an empty question gets one)."""
    response = httpx.post(f"{base}/api/ask", json={"question": ""}, timeout=30)
    return str(response.json()["disclaimer"])


async def run(
    args: argparse.Namespace, server: Server, sampler: MemorySampler | None, questions: Iterator[str]
) -> list[Phase]:
    addresses = Addresses(enabled=urlsplit(server.base).hostname in {"127.0.0.1", "localhost"})
    phases: list[Phase] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())

    def begin(name: str) -> Phase:
        phase = Phase(name)
        phases.append(phase)
        if sampler is not None:
            sampler.phase = name
        return phase

    with Progress(*columns, console=console) as progress:
        warm = Phase("warm-up")
        track = Tracker(warm, progress, 16)
        for endpoint in ("api", "chat"):
            await closed_loop(server, track, endpoint, 8, 1, questions, addresses)
        levels = [int(level) for level in args.clients.split(",")]
        for endpoint in ("api", "chat"):
            for clients in levels:
                phase = begin(f"{clients} client{'s' if clients > 1 else ''} ({endpoint})")
                track = Tracker(phase, progress, clients * args.requests_per_client)
                await closed_loop(server, track, endpoint, clients, args.requests_per_client, questions, addresses)
                phase.close()
        for name, factor, seconds in (
            ("soak at the design load", 1, args.soak_seconds),
            ("twice the design load", 2, args.double_seconds),
        ):
            if seconds <= 0:
                continue
            rate = factor * args.design_rate
            people = math.ceil(rate * args.think_seconds)
            phase = begin(name)
            phase.notes.append(f"{rate:g} questions/s from {people} visitors for {seconds:g} s")
            track = Tracker(phase, progress, round(rate * seconds))
            await open_loop(server, track, rate, seconds, people, args, questions, addresses)
            phase.close()
            drained = time.monotonic() - phase.started - seconds
            phase.notes.append(f"its last answer came {drained:.1f} s after the arrivals stopped")
        if args.storm > 0:
            single = [o.latency for p in phases if p.name == "1 client (api)" for o in p.outcomes]
            api_wait = statistics.median([t for t in single if t is not None] or [0.02])
            phase = begin("disconnect storm")
            phase.notes.append(
                f"{args.storm} clients within {args.storm_seconds:g} s; API requests reset after up to "
                f"{api_wait * 1000:.1f} ms (the one-client p50)"
            )
            track = Tracker(phase, progress, args.storm)
            await disconnect_storm(server, track, args, api_wait, questions, addresses)
            phase.close()
            started = time.monotonic()
            async with httpx.AsyncClient(base_url=server.base, timeout=30) as http:
                while (await http.get("/api/health")).status_code != 200 and time.monotonic() - started < 120:
                    await asyncio.sleep(0.5)
            phase.notes.append(f"healthy again {time.monotonic() - started:.2f} s after the storm ended")
            for endpoint in ("api", "chat"):
                phase = begin(f"8 clients after the storm ({endpoint})")
                track = Tracker(phase, progress, 8 * args.requests_per_client)
                await closed_loop(server, track, endpoint, 8, args.requests_per_client, questions, addresses)
                phase.close()
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running server (default: start one on a free loopback port)")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid, for its RSS (else looked up)")
    parser.add_argument("--workers", type=int, default=1, help="answer processes of the started server")
    parser.add_argument("--index-dir", type=Path, default=None, help="index folder (default: from settings)")
    parser.add_argument("--clients", default="1,8,32,64", help="concurrency levels of the bounded load")
    parser.add_argument("--requests-per-client", type=int, default=4, help="questions per client per level")
    parser.add_argument(
        "--design-rate", type=float, default=4.0, help="design load, questions per second (docs/performance.md)"
    )
    parser.add_argument("--think-seconds", type=float, default=30.0, help="a visitor's mean time between questions")
    parser.add_argument("--chat-share", type=float, default=0.5, help="share of conversations on the chat page")
    parser.add_argument("--turns", type=int, default=3, help="questions per conversation")
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="soak at the design load (0: skip)")
    parser.add_argument("--double-seconds", type=float, default=120.0, help="run at twice the design load (0: skip)")
    parser.add_argument("--storm", type=int, default=200, help="clients in the disconnect storm (0: skip)")
    parser.add_argument("--storm-seconds", type=float, default=2.0, help="the storm's clients start within this")
    parser.add_argument("--sample-seconds", type=float, default=1.0, help="RSS sampling interval")
    parser.add_argument(
        "--server-setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting of the started server, as ASSISTANT_NAME (repeatable), e.g. CHAT_SESSIONS_KEPT=300",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the question order and the arrivals")
    parser.add_argument("--questions", action="store_true", help="print how many distinct questions exist, and exit")
    args = parser.parse_args()

    settings = load_settings()
    corpus = load_corpus(settings.corpus_dir)
    if args.questions:
        evals = eval_questions(ROOT / "evals")
        headings, sentences = corpus_questions(corpus)
        console.print(
            f"{len(set(evals))} eval questions; {len(headings)} from section headings (2 templates); "
            f"{len(sentences)} from corpus sentences of 6+ words (3 templates); then "
            f"{len(evals) * len(corpus.sections)} eval question x heading pairs."
        )
        return
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # a socket or two per simulated visitor
    questions = unique_questions(corpus, ROOT / "evals", args.seed)

    from assistant.ui import escape_text

    with contextlib.ExitStack() as stack:
        data_dir: Path | None = None
        log: Path | None = None
        if args.url:
            base = args.url.rstrip("/")
            wait_ready(base, None)
            pid = args.server_pid or listening_pid(urlsplit(base).port or 80)
        else:
            data_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
            log = data_dir / "server.log"
            command = [sys.executable, "-m", "assistant.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]
            base, process = stack.enter_context(
                running_server(
                    [*command, "--workers", str(args.workers)],
                    args.workers,
                    args.index_dir or settings.index_dir,
                    log,
                    extra_env={"ASSISTANT_DATA_DIR": str(data_dir), **server_settings(args.server_setting)},
                )
            )
            pid = process.pid
        disclaimer = exposed_disclaimer(base)
        server = Server(base, chat_fn_index(base), disclaimer, escape_text(disclaimer))
        sampler = MemorySampler(pid, args.sample_seconds) if pid else None
        if sampler is not None:
            sampler.start()
        started = time.monotonic()
        try:
            phases = asyncio.run(run(args, server, sampler, questions))
        finally:
            if sampler is not None:
                sampler.stop()
        elapsed = time.monotonic() - started
        stored = stored_answers(data_dir, disclaimer) if data_dir is not None else None

    console.print(
        f"\n{psutil.cpu_count()} CPU(s), load average {', '.join(f'{x:.1f}' for x in psutil.getloadavg())}; "
        f"server {'at ' + base if args.url else f'started with {args.workers} answer process(es)'}; "
        f"{elapsed:.0f} s in all."
    )
    console.print(
        f"Disclaimer sent by the server {'matches' if disclaimer == corpus.disclaimer else 'DIFFERS FROM'} "
        "the corpus's Legal Disclaimer."
    )
    for phase in phases:
        for note in phase.notes:
            console.print(f"{phase.name}: {note}.")
        if phase.not_sent:
            console.print(f"{phase.name}: {phase.not_sent} arrivals not sent (every visitor still waiting).")
    console.print(load_table([p for p in phases if p.name != "disconnect storm"]))
    for phase in phases:
        if phase.name.startswith(("soak", "twice")):
            console.print(timeline_table(phase, sampler))
        if phase.name == "disconnect storm":
            console.print(storm_table(phase))
    if sampler is not None:
        console.print(memory_table(sampler, phases))
    else:
        console.print("Server RSS not sampled: its pid is unknown (give --server-pid).")
    if stored:
        console.print(stored)
    if log is not None:
        console.print(server_log_summary(log))


if __name__ == "__main__":
    main()
