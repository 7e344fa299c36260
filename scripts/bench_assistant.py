"""Benchmark the assistant on its two embedding runtimes, ONNX Runtime (the default) and torch, in one run.

Prints, each as the median of several runs, side by side for ``onnx`` and ``torch``:
- warm latency per question in process (p50, p95) over the known questions, each question embedded anew;
- cold start to first answer (a fresh process: imports, model load, opening the index, one question);
- peak memory (VmHWM) of those cold-start processes;
- ``assistant index`` on the full corpus: a first build (nothing cached: every text of the corpus and of the
  question bank embedded, the decisions fitted with cross-validation) and a rebuild (``--force``) with the
  vector cache that first build left;
- the least any first build must spend embedding: every token of the corpus's files embedded once, in windows as
  long as the model reads and none overlapping (no bank, no fit, no index), in a fresh process.

Usage: .venv/bin/python scripts/bench_assistant.py [--runs 3] [--build-runs 2] [--dataset evals/questions.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
BACKENDS = ("onnx", "torch")

PEAK_RSS = """
def peak_rss_kib():
    # VmHWM belongs to this process's own memory map; ru_maxrss would carry the parent's peak across fork.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
"""

COLD = (
    PEAK_RSS
    + """
import sys
from pathlib import Path
from assistant import Assistant, load_settings
assistant = Assistant(load_settings(index_dir=Path(sys.argv[1])))
assistant.ask("Does Spotify allow extracting stems from its songs?")
print("torch" in sys.modules)
print(peak_rss_kib())
"""
)

WARM = """
import json, sys, time
from pathlib import Path
from assistant import Assistant, load_settings
index_dir, dataset, runs = sys.argv[1:4]
rows = [json.loads(line) for line in Path(dataset).read_text(encoding="utf-8").splitlines() if line.strip()]
questions = [(row.get("question") or row.get("user_input"), row.get("history", [])) for row in rows]
assistant = Assistant(load_settings(index_dir=Path(index_dir)))
assistant.ask("warm up")
result = []
for run in range(int(runs)):
    print(f"warm latency run {run + 1}/{runs} over {len(questions)} questions", file=sys.stderr, flush=True)
    # Every run embeds each question anew: the assistant's per-text cache would otherwise
    # turn runs after the first into cache hits, which no new question gets.
    assistant._views.clear()
    times = []
    for question, history in questions:
        started = time.perf_counter()
        assistant.ask(question, history)
        times.append(time.perf_counter() - started)
    result.append(times)
print(json.dumps(result))
"""

CORPUS_ONCE = """
import sys, time
from pathlib import Path
from tokenizers import Tokenizer
from assistant import load_settings
from assistant.embeddings import make_embeddings, max_seq_length
settings = load_settings(index_dir=Path(sys.argv[1]))
model_dir = Path(settings.embedding_model)
tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
tokenizer.no_truncation()
tokenizer.no_padding()
embeddings = make_embeddings(settings)
length = max_seq_length(model_dir) - 2  # the model's window less [CLS] and [SEP]
windows = []
for path in sorted(Path(settings.corpus_dir).iterdir()):
    text = path.read_text(encoding="utf-8")
    offsets = tokenizer.encode(text, add_special_tokens=False).offsets
    for start in range(0, len(offsets), length):
        end = min(start + length, len(offsets)) - 1
        windows.append(text[offsets[start][0] : offsets[end][1]])
tokens = sum(len(tokenizer.encode(window).ids) for window in windows)
embeddings.embed_documents(windows[:2])  # warm up
started = time.perf_counter()
embeddings.embed_documents(windows)
print(tokens, time.perf_counter() - started)
"""

ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def env_for(backend: str, index_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        **ENV,
        "ASSISTANT_EMBEDDING_BACKEND": backend,
        "ASSISTANT_INDEX_DIR": str(index_dir),
    }


def cold(backend: str, index_dir: Path) -> tuple[float, float, bool]:
    """Seconds from process start to first answer, the process's peak RSS in MiB, and whether torch loaded."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(COLD), str(index_dir)],
        capture_output=True,
        text=True,
        env=env_for(backend, index_dir),
        check=True,
    )
    elapsed = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    return elapsed, int(lines[-1]) / 1024, lines[-2] == "True"


def warm(backend: str, index_dir: Path, dataset: Path, runs: int) -> list[list[float]]:
    """Per-question seconds, measured in a fresh process that only serves (as the server does)."""
    done = subprocess.run(
        [sys.executable, "-c", WARM, str(index_dir), str(dataset), str(runs)],
        stdout=subprocess.PIPE,
        text=True,
        env=env_for(backend, index_dir),
        check=True,
    )
    result: list[list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def corpus_once(backend: str, index_dir: Path) -> tuple[int, float]:
    """Tokens in the corpus's files and seconds to embed each of them once, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", CORPUS_ONCE, str(index_dir)],
        capture_output=True,
        text=True,
        env=env_for(backend, index_dir),
        check=True,
    )
    tokens, seconds = done.stdout.strip().splitlines()[-1].split()
    return int(tokens), float(seconds)


def build(backend: str, index_dir: Path, force: bool) -> float:
    """Seconds for ``assistant index`` (``--force`` to rebuild) in a fresh process."""
    command = [sys.executable, "-m", "assistant.cli", "index", *(["--force"] if force else [])]
    started = time.perf_counter()
    subprocess.run(command, env=env_for(backend, index_dir), check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs for latency and cold start")
    parser.add_argument("--build-runs", type=int, default=2, help="runs for each kind of index build")
    parser.add_argument("--dataset", type=Path, default=ROOT / "evals" / "questions.jsonl")
    parser.add_argument("--index-dir", type=Path, help="an index built already: measure serving only, no builds")
    args = parser.parse_args()

    rows = [json.loads(line) for line in args.dataset.read_text(encoding="utf-8").splitlines() if line.strip()]
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    first: dict[str, list[float]] = {b: [] for b in BACKENDS}
    again: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for run in range(0 if args.index_dir else args.build_runs):
        for backend in BACKENDS:
            index_dir = work / f"{backend}-{run}"
            console.print(f"[bold]first build[/] {backend}, run {run + 1}/{args.build_runs}")
            first[backend].append(build(backend, index_dir, force=False))
            console.print(f"[bold]rebuild with the vector cache[/] {backend}, run {run + 1}/{args.build_runs}")
            again[backend].append(build(backend, index_dir, force=True))
            if run < args.build_runs - 1:
                shutil.rmtree(index_dir)

    indexes = {backend: args.index_dir or work / f"{backend}-{args.build_runs - 1}" for backend in BACKENDS}
    warm_times = {}
    for backend in BACKENDS:
        console.print(f"[bold]warm latency[/] {backend}")
        warm_times[backend] = warm(backend, indexes[backend], args.dataset, args.runs)
    once: dict[str, list[tuple[int, float]]] = {b: [] for b in BACKENDS}
    for run in range(0 if args.index_dir else args.build_runs):
        for backend in BACKENDS:
            console.print(f"[bold]every corpus token embedded once[/] {backend}, run {run + 1}/{args.build_runs}")
            once[backend].append(corpus_once(backend, indexes[backend]))
    colds: dict[str, list[tuple[float, float, bool]]] = {b: [] for b in BACKENDS}
    for run in range(args.runs):
        for backend in BACKENDS:
            console.print(f"[bold]cold start[/] {backend}, run {run + 1}/{args.runs}")
            colds[backend].append(cold(backend, indexes[backend]))

    med = statistics.median
    builds = f"serving only, on {args.index_dir}" if args.index_dir else f"{args.build_runs} build(s) of each kind"
    table = Table(title=f"Embedding runtimes (medians; {args.runs} runs, {builds})")
    table.add_column("measure")
    for backend in BACKENDS:
        table.add_column(backend + (" (default)" if backend == "onnx" else ""), justify="right")

    def row(label: str, values: dict[str, str]) -> None:
        table.add_row(label, *(values[b] for b in BACKENDS))

    row(
        "warm p50 per question",
        {b: f"{med([percentile(t, 0.5) for t in warm_times[b]]) * 1000:.1f} ms" for b in BACKENDS},
    )
    row(
        "warm p95 per question",
        {b: f"{med([percentile(t, 0.95) for t in warm_times[b]]) * 1000:.1f} ms" for b in BACKENDS},
    )
    row("cold start to first answer", {b: f"{med([c[0] for c in colds[b]]):.2f} s" for b in BACKENDS})
    row("peak memory (cold process)", {b: f"{med([c[1] for c in colds[b]]):.0f} MiB" for b in BACKENDS})
    row("torch loaded to serve", {b: "yes" if any(c[2] for c in colds[b]) else "no" for b in BACKENDS})
    if not args.index_dir:
        row("assistant index, first build", {b: f"{med(first[b]):.1f} s" for b in BACKENDS})
        row("assistant index --force, vector cache warm", {b: f"{med(again[b]):.1f} s" for b in BACKENDS})
        tokens = once[BACKENDS[0]][0][0]
        row(
            f"least a first build embeds: the corpus's {tokens:,} tokens once",
            {b: f"{med([o[1] for o in once[b]]):.1f} s" for b in BACKENDS},
        )
    console.print(table)
    console.print(f"questions: {len(rows)}; cores: {os.cpu_count()}; scratch folder: {work}")


if __name__ == "__main__":
    main()
