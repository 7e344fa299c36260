"""Benchmark the replicated service (scripts/cluster.sh) with 1 replica and with 2, behind the sticky proxy.

For each replica count it starts the whole cluster (PostgreSQL, Redis, the replicas, the proxy), then has 8
and 64 concurrent clients send a fixed number of ``POST /api/ask`` requests each (bounded loops). Every
client connects from its own loopback address (127.0.0.2, 127.0.0.3, ...), so the proxy, which keeps each
address on one replica, spreads them as it would spread real visitors. Prints the medians of the runs' p50,
p95 and throughput, and every error.

    .venv/bin/python scripts/bench_cluster.py [--runs 3] [--clients 8,64] [--requests-per-client 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from bench_server import QUESTIONS, free_port, table

ROOT = Path(__file__).resolve().parent.parent


async def run_once(base: str, clients: int, per_client: int) -> tuple[float, float, float, int]:
    latencies: list[float] = []
    errors = 0

    async def client(number: int) -> None:
        nonlocal errors
        address = f"127.0.{(number + 2) // 250}.{(number + 2) % 250 + 1}"
        transport = httpx.AsyncHTTPTransport(local_address=address)
        async with httpx.AsyncClient(base_url=base, timeout=120, transport=transport) as http:
            for request in range(per_client):
                started = time.perf_counter()
                try:
                    response = await http.post(
                        "/api/ask", json={"question": QUESTIONS[(number + request) % len(QUESTIONS)]}
                    )
                    response.raise_for_status()
                    if not response.json()["disclaimer"]:
                        raise RuntimeError("answer without disclaimer")
                except (httpx.HTTPError, RuntimeError, KeyError, ValueError):
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client(n) for n in range(clients)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies) or [float("nan")]
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000, len(latencies) / elapsed, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="8,64")
    parser.add_argument("--requests-per-client", type=int, default=4)
    parser.add_argument("--replicas", default="1,2")
    args = parser.parse_args()

    rows = []
    for replicas in [int(r) for r in args.replicas.split(",")]:
        port = free_port()
        log = Path(tempfile.mkstemp(prefix="bench-cluster-", suffix=".log")[1])
        env = {
            **os.environ,
            "CLUSTER_REPLICAS": str(replicas),
            "CLUSTER_PORT": str(port),
            "ASSISTANT_RATE_LIMIT_PER_MINUTE": "100000",
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / "cluster.sh")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + 900
            while "cluster: ready" not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the cluster did not start; see {log}")
                time.sleep(1)
            base = f"http://127.0.0.1:{port}"
            asyncio.run(run_once(base, 8, 1))  # warm every replica's caches a little
            for clients in [int(c) for c in args.clients.split(",")]:
                runs = [asyncio.run(run_once(base, clients, args.requests_per_client)) for _ in range(args.runs)]
                rows.append(
                    (
                        f"ask via proxy, {replicas} replica{'s' if replicas > 1 else ''}",
                        clients,
                        clients * args.requests_per_client,
                        statistics.median(r[0] for r in runs),
                        statistics.median(r[1] for r in runs),
                        statistics.median(r[0] for r in runs),
                        statistics.median(r[2] for r in runs),
                        sum(r[3] for r in runs),
                    )
                )
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=120)
    print(f"\n{os.cpu_count()} CPU(s); medians of {args.runs} runs, {args.requests_per_client} requests per client.")
    print(table(rows))


if __name__ == "__main__":
    main()
