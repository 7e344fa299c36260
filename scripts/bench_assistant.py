"""Benchmark the assistant against plain dense LangChain retrieval over the same chunks, in one run.

Prints, each as the median of several runs, side by side:
- warm latency per question in process (p50, p95) over the known questions;
- cold start to first answer (a fresh process: imports, model load, opening the index, one question);
- index build time: the assistant's `assistant index` (chunks, sentences, paragraphs and headings embedded,
  then the decisions fitted on the question bank with cross-validation), and the baseline's
  Chroma.from_documents over the chunks;
- peak memory (max RSS) of the cold-start processes.

Usage: .venv/bin/python scripts/bench_assistant.py [--runs 3] [--build-runs 2] [--dataset evals/questions.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
console = Console()

PEAK_RSS = """
def peak_rss_kib():
    # VmHWM belongs to this process's own memory map; ru_maxrss would carry the parent's peak across fork.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

COLD_ASSISTANT = (
    PEAK_RSS
    + """
import sys
from pathlib import Path
from assistant import Assistant, load_settings
assistant = Assistant(load_settings(index_dir=Path(sys.argv[1])))
assistant.ask("Does Spotify allow extracting stems from its songs?")
print(peak_rss_kib())
"""
)

COLD_DENSE = (
    PEAK_RSS
    + """
import sys
from pathlib import Path
from langchain_chroma import Chroma
from assistant.embeddings import make_embeddings
from assistant.settings import load_settings
import chromadb
settings = load_settings()
client = chromadb.PersistentClient(path=sys.argv[1])
store = Chroma(client=client, collection_name="dense", embedding_function=make_embeddings(settings))
store.similarity_search("Does Spotify allow extracting stems from its songs?", k=6)
print(peak_rss_kib())
"""
)

WARM = """
import json, sys, time
from pathlib import Path
from langchain_chroma import Chroma
from assistant import Assistant, load_settings
from assistant.index import _chroma_client
from assistant.retrieval import DenseRetriever
index_dir, dense_dir, dataset, runs, k = sys.argv[1:6]
rows = [json.loads(line) for line in Path(dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
questions = [(row.get("question") or row.get("user_input"), row.get("history", [])) for row in rows]
assistant = Assistant(load_settings(index_dir=Path(index_dir)))
dense = DenseRetriever(
    store=Chroma(
        client=_chroma_client(Path(dense_dir)), collection_name="dense", embedding_function=assistant._embeddings
    )
)
assistant.ask("warm up")
dense.invoke("warm up", k=int(k))
result = {"assistant": [], "dense": []}
for run in range(int(runs)):
    print(f"warm latency run {run + 1}/{runs} over {len(questions)} questions", file=sys.stderr, flush=True)
    # Every run embeds each question anew: the assistant's per-text cache would otherwise
    # turn runs after the first into cache hits, which no new question gets.
    assistant._views.clear()
    times_a, times_d = [], []
    for question, history in questions:
        started = time.perf_counter()
        assistant.ask(question, history)
        times_a.append(time.perf_counter() - started)
        started = time.perf_counter()
        dense.invoke(question, k=int(k))
        times_d.append(time.perf_counter() - started)
    result["assistant"].append(times_a)
    result["dense"].append(times_d)
print(json.dumps(result))
"""

BASELINE_K = 6
"""Passages the dense baseline returns per question: as many as an answer used to be composed from."""

ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def cold(script: str, argument: str) -> tuple[float, float]:
    """Seconds from process start to first answer, and the process's peak RSS in MiB."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), argument],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        check=True,
    )
    elapsed = time.perf_counter() - started
    return elapsed, int(done.stdout.strip().splitlines()[-1]) / 1024


def warm(index_dir: Path, dense_dir: Path, dataset: Path, runs: int) -> dict[str, list[list[float]]]:
    """Per-question seconds of both arms, measured in a fresh process that only serves (as the server does)."""
    done = subprocess.run(
        [sys.executable, "-c", WARM, str(index_dir), str(dense_dir), str(dataset), str(runs), str(BASELINE_K)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **ENV},
        check=True,
    )
    result: dict[str, list[list[float]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs for latency and cold start")
    parser.add_argument("--build-runs", type=int, default=2, help="runs for the index builds")
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals" / "questions.jsonl")
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from langchain_chroma import Chroma

    from assistant import load_settings
    from assistant.assistant import prepare
    from assistant.chunking import chunk_corpus
    from assistant.corpus import load_corpus
    from assistant.embeddings import make_embeddings
    from assistant.index import _chroma_client

    rows = [json.loads(line) for line in args.dataset.read_text(encoding="utf-8").splitlines() if line.strip()]
    questions = [row.get("question") or row.get("user_input") for row in rows]
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    settings = load_settings(index_dir=work / "assistant-index")
    corpus = load_corpus(settings.corpus_dir)
    embeddings = make_embeddings(settings)
    chunks = chunk_corpus(corpus, settings.chunk_chars)

    build_assistant: list[float] = []
    build_dense: list[float] = []
    for run in range(args.build_runs):
        console.print(f"[bold]build[/] run {run + 1}/{args.build_runs}")
        started = time.perf_counter()
        prepare(settings, force=True, embeddings=embeddings, corpus=corpus)
        build_assistant.append(time.perf_counter() - started)
        dense_dir = work / f"dense-{run}"
        started = time.perf_counter()
        Chroma.from_documents(
            chunks,
            embeddings,
            client=_chroma_client(dense_dir),
            collection_name="dense",
            ids=[str(c.id) for c in chunks],
        )
        build_dense.append(time.perf_counter() - started)

    # Warm latency is measured in a fresh process: the builds above fit models and fill memory, which a
    # serving process never does, and that would slow both arms alike.
    timings = warm(settings.index_dir, work / "dense-0", args.dataset, args.runs)
    warm_assistant, warm_dense = timings["assistant"], timings["dense"]

    cold_assistant, cold_dense = [], []
    for run in range(args.runs):
        console.print(f"[bold]cold start[/] run {run + 1}/{args.runs}")
        cold_assistant.append(cold(COLD_ASSISTANT, str(settings.index_dir)))
        cold_dense.append(cold(COLD_DENSE, str(work / "dense-0")))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    table = Table(title=f"Assistant vs plain dense retrieval (medians; {args.runs} runs, {args.build_runs} builds)")
    table.add_column("measure")
    table.add_column("assistant (hybrid + answer + guardrails)", justify="right")
    table.add_column("dense LangChain retrieval only", justify="right")
    table.add_row(
        "warm p50 per question",
        f"{med([percentile(t, 0.5) for t in warm_assistant]) * 1000:.1f} ms",
        f"{med([percentile(t, 0.5) for t in warm_dense]) * 1000:.1f} ms",
    )
    table.add_row(
        "warm p95 per question",
        f"{med([percentile(t, 0.95) for t in warm_assistant]) * 1000:.1f} ms",
        f"{med([percentile(t, 0.95) for t in warm_dense]) * 1000:.1f} ms",
    )
    table.add_row(
        "cold start to first answer",
        f"{med([c[0] for c in cold_assistant]):.1f} s",
        f"{med([c[0] for c in cold_dense]):.1f} s",
    )
    table.add_row("index build (+ fitting, assistant)", f"{med(build_assistant):.1f} s", f"{med(build_dense):.1f} s")
    table.add_row(
        "peak memory (cold process)",
        f"{med([c[1] for c in cold_assistant]):.0f} MiB",
        f"{med([c[1] for c in cold_dense]):.0f} MiB",
    )
    console.print(table)
    console.print(
        f"chunks: {len(chunks)}; questions: {len(questions)}; "
        f"assistant index holds chunks, sentences, paragraphs and headings, the baseline chunks only. "
        f"Scratch folder: {work}"
    )


if __name__ == "__main__":
    main()
