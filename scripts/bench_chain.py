"""What the LangChain chain costs over calling its steps by hand, in one run.

For each known question, alternately: ``assistant.chain.invoke`` (seven runnables, config and callback
managers), and the same seven step methods called directly in order. Prints the median per-ask time of each
over several rounds, and their difference: the chain's overhead.

Usage: .venv/bin/python scripts/bench_chain.py [--rounds 5] [--dataset evals/questions.jsonl] [--limit 60]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from assistant.assistant import Assistant
from assistant.chain import to_turn
from assistant.evaluation.dataset import load_dataset
from assistant.schemas import Answer

console = Console()


def by_hand(assistant: Assistant, question: str) -> Answer:
    turn = assistant.check_input(to_turn(question))
    for step in (assistant.situation, assistant.standalone_question, assistant.retrieve, assistant.compose):
        if not turn.finished:
            turn = step(turn)
    answer = assistant.guard(turn).answer
    assert answer is not None
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dataset", type=Path, default=Path("evals/questions.jsonl"))
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    assistant = Assistant()
    questions = [case.question for case in load_dataset(args.dataset) if not case.history][: args.limit]
    for question in questions[:5]:  # warm-up: lazy loads and caches
        assistant.chain.invoke(question)
        by_hand(assistant, question)
    chain_ms: list[float] = []
    hand_ms: list[float] = []
    for _ in range(args.rounds):
        for run, sink in ((assistant.chain.invoke, chain_ms), (lambda q: by_hand(assistant, q), hand_ms)):
            started = time.perf_counter()
            for question in questions:
                run(question)
            sink.append((time.perf_counter() - started) / len(questions) * 1000)
    table = Table(title=f"Per ask, median of {args.rounds} rounds over {len(questions)} questions")
    table.add_column("path")
    table.add_column("ms per ask", justify="right")
    table.add_row("steps called by hand (baseline)", f"{statistics.median(hand_ms):.2f}")
    table.add_row("chain.invoke", f"{statistics.median(chain_ms):.2f}")
    table.add_row("chain overhead", f"{statistics.median(chain_ms) - statistics.median(hand_ms):.2f}")
    console.print(table)


if __name__ == "__main__":
    main()
