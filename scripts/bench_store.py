"""What the shared state costs a request: the store's writes, redaction, and a Redis rate-limit check.

Prints median and p95 milliseconds per operation, for SQLite in a temp folder and, when given, for a
PostgreSQL database (--database-url, an empty database: tables are created) and a Redis (--redis-url).

    .venv/bin/python scripts/bench_store.py --runs 300
    .venv/bin/python scripts/bench_store.py --database-url postgresql+psycopg://u@127.0.0.1:5432/db \\
        --redis-url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from assistant.ratelimit import RateLimiter, RedisRateLimiter
from assistant.redact import redact
from assistant.settings import Settings
from assistant.store import IssuedAnswer, LoggedQuestion, open_store

QUESTION = "Can I release a remix of https://example.com/track? Mail me at dj@example.com or call +44 20 7946 0958."


def measure(name: str, runs: int, operation: Callable[[int], object]) -> None:
    timings = []
    for n in range(runs):
        started = time.perf_counter()
        operation(n)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    print(f"| {name:<44} | {runs:>5} | {statistics.median(timings):>7.2f} | {p95:>7.2f} |")


def bench_store(label: str, settings: Settings, runs: int) -> None:
    store = open_store(settings)
    ids = [uuid.uuid4().hex for _ in range(runs)]
    try:

        def record(n: int) -> None:
            logged = LoggedQuestion(question=redact(QUESTION), covered=True, sections=["A — B"], latency_ms=50.0)
            store.record_answer(IssuedAnswer(answer_id=ids[n], question=QUESTION, answer="An answer. [1]"), logged)

        measure(f"{label}: answer + question-log line", runs, record)
        measure(f"{label}: feedback (upsert, read back)", runs, lambda n: store.record_feedback(ids[n], "q", "a", "up"))
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--database-url", help="An empty PostgreSQL database to measure as well.")
    parser.add_argument("--redis-url", help="A Redis to measure the shared rate-limit check on.")
    args = parser.parse_args()
    print("| operation                                    |  runs | p50 ms  | p95 ms  |")
    print("|----------------------------------------------|-------|---------|---------|")
    measure("redact one question", args.runs, lambda n: redact(QUESTION))
    local = RateLimiter(10**9)
    measure("rate-limit check, in-process", args.runs, lambda n: local.hit(f"client-{n % 50}"))
    with tempfile.TemporaryDirectory() as folder:
        bench_store("SQLite", Settings(_env_file=None, data_dir=Path(folder)), args.runs)  # type: ignore[call-arg]
    if args.database_url:
        bench_store("PostgreSQL", Settings(_env_file=None, database_url=args.database_url), args.runs)  # type: ignore[call-arg]
    if args.redis_url:
        import redis

        shared = RedisRateLimiter(redis.Redis.from_url(args.redis_url), 10**9, prefix=f"bench:{uuid.uuid4().hex}:")
        measure("rate-limit check, Redis", args.runs, lambda n: shared.hit(f"client-{n % 50}"))


if __name__ == "__main__":
    main()
