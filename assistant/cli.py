"""The ``assistant`` command line: build the index, ask, serve, evaluate, list what is not covered.

Domain errors are turned into a message and exit code 2 here, once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table
from rich.text import Text

from assistant.errors import AssistantError
from assistant.settings import Settings, load_settings

app = typer.Typer(
    help="A grounded help assistant for 'Is AI Stem Separation Legal?' and its cited sources.",
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()


def _fail(error: AssistantError) -> typer.Exit:
    err.print(f"[bold red]Error:[/] {error}")
    return typer.Exit(code=2)


def _settings() -> Settings:
    try:
        return load_settings()
    except ValueError as error:
        err.print(f"[bold red]Error:[/] invalid ASSISTANT_* setting: {error}")
        raise typer.Exit(code=2) from None


@app.command()
def index(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Rebuild the index even when up to date (unchanged records reuse the cached decisions; "
            "add --retrain to refit).",
        ),
    ] = False,
    retrain: Annotated[bool, typer.Option("--retrain", help="Refit the decisions even when up to date.")] = False,
) -> None:
    """Build the Chroma index from corpus/ and fit the decisions on the question bank (each only when needed).

    With ASSISTANT_CHROMA_URL set, the build is then published to that Chroma server as a new version and made
    live there (unless it already is).
    """
    from assistant.assistant import prepare, publish

    settings = _settings()
    try:
        engine = prepare(settings, force=force, retrain=retrain)
        published = publish(settings, engine) if settings.chroma_url else None
    except AssistantError as error:
        raise _fail(error) from None
    manifest, report = engine.build.manifest, engine.report
    out.print(
        f"Index ready: {manifest['chunks']} chunks, model {manifest['embedding_model']}, "
        f"built {manifest['built_at']} in {engine.build.path}"
    )
    if published is not None:
        version, new = published
        state = "published and live" if new else "already live (nothing changed)"
        out.print(f"Index server: build {version.build_id} {state} (source build {version.manifest['source_build']})")
    out.print(training_summary(report))


def training_summary(report: dict[str, Any]) -> Table:
    """The decisions' cross-validation figures, as `assistant index` prints them."""
    situation, coverage, ranker, sections = (
        report["situation"],
        report["coverage"],
        report["ranker"],
        report["sections"],
    )
    table = Table(
        title=f"Decisions fitted on {report['bank']['items']['all']} bank questions "
        f"({report['bank']['items']['authors']} authors), {report['folds']}-fold CV by author",
        show_lines=False,
    )
    table.add_column("decision")
    table.add_column("cross-validated figures")
    micro = situation["micro"]
    table.add_row(
        "situation (5 triggers)",
        f"precision {micro['precision']:.3f}, recall {micro['recall']:.3f}, F1 {micro['f1']:.3f}; "
        f"near-miss false alarms {situation['near_miss_false_rate']:.3f}",
    )
    table.add_row(
        "coverage",
        f"answerable answered {coverage['answerable_answered']:.3f}, "
        f"out of scope declined {coverage['unanswerable_declined']:.3f}",
    )
    table.add_row("sections", f"top-1 {sections['top1']:.3f}, top-3 {sections['top3']:.3f}")
    table.add_row(
        "ranker",
        f"gold sentence first {ranker['gold_hit@1']:.3f}, in top 3 {ranker['gold_hit@3']:.3f}; "
        f"answering section in top 3 {ranker['section_hit@3']:.3f}",
    )
    wants = report["wants_list"]
    table.add_row("whole list asked for", f"precision {wants['precision']:.3f}, recall {wants['recall']:.3f}")
    table.add_row("thresholds (fitted)", ", ".join(f"{k} {v:.3f}" for k, v in report["thresholds"].items()))
    table.add_row("fitted in", f"{report['seconds']:.0f} s (key {report['key']})")
    return table


@app.command("bank")
def bank_command(
    overlap: Annotated[
        bool, typer.Option("--overlap", help="Also list the bank messages closest to any eval question.")
    ] = False,
    evals: Annotated[Path, typer.Option(help="Folder of eval sets (*.jsonl) to compare with.")] = Path("evals"),
    limit: Annotated[int, typer.Option(min=1, max=200, help="How many closest pairs to list.")] = 10,
) -> None:
    """Show the labelled question bank's size per label, and how far it keeps from the eval sets."""
    from assistant.bank import eval_questions, load_bank, nearest_eval_questions
    from assistant.corpus import load_corpus

    settings = _settings()
    try:
        bank = load_bank(load_corpus(settings.corpus_dir, settings.article_url), settings.bank_dir)
    except AssistantError as error:
        raise _fail(error) from None
    sizes = bank.sizes()
    table = Table(title=f"Question bank: {sizes['items']['all']} messages by {sizes['items']['authors']} authors")
    table.add_column("label")
    table.add_column("messages", justify="right")
    for group in ("covered", "kind", "trigger", "section"):
        for name, count in sizes[group].items():
            table.add_row(f"{group}: {name}", str(count))
    out.print(table)
    if not overlap:
        return
    from assistant.embeddings import make_embeddings

    sets = sorted(evals.glob("*.jsonl"))
    if not sets:
        raise _fail(AssistantError(f"No eval sets (*.jsonl) in {evals}."))
    pairs = nearest_eval_questions(bank, eval_questions(sets), make_embeddings(settings).embed_documents)
    limit_value = settings.decisions.near_copy
    listing = Table(title=f"Closest bank/eval pairs (a near-copy is {limit_value:.2f} or more)")
    for column in ("cosine", "bank message", "eval set", "eval question"):
        listing.add_column(column)
    for pair in pairs[:limit]:
        listing.add_row(f"{pair.similarity:.3f}", pair.message, pair.eval_file, pair.question)
    out.print(listing)
    if pairs and pairs[0].similarity >= limit_value:
        err.print(f"[bold red]The bank holds near-copies of eval questions[/] (cosine ≥ {limit_value:.2f}).")
        raise typer.Exit(code=1)


def _read_history(path: Path | None) -> list[dict[str, str]]:
    if path is None:
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise typer.BadParameter(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, list):
        raise typer.BadParameter(f"{path} must hold a JSON list of {{'role', 'content'}} objects.")
    return data


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="Your question.")],
    history: Annotated[
        Path | None,
        typer.Option("--history", help="JSON file: a list of {'role': 'user'|'assistant', 'content': str}."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the Answer as JSON.")] = False,
) -> None:
    """Ask one question and print the answer with sources, notices and the disclaimer."""
    from assistant.allocator import startup_heap

    turns = _read_history(history)
    try:
        with startup_heap():
            from assistant.assistant import Assistant

            answerer = Assistant(_settings())
        answer = answerer.ask(question, turns)
    except AssistantError as error:
        raise _fail(error) from None
    if as_json:
        sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
    else:
        out.print(Markdown(answer.rendered))
        dropped = f", {answer.sentences_dropped} unverified sentence(s) dropped" if answer.sentences_dropped else ""
        out.print(f"[dim]Composer: {answer.composer}{dropped}[/]")
    if answer.input_problem is not None:
        raise typer.Exit(code=2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 7860).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=0, max=32, help="Answer processes; 0 answers in the server's own process (default: 1)."),
    ] = None,
) -> None:
    """Serve the chat UI, the help widget and the HTTP API on one server."""
    from assistant.launch import serve as serve_forever

    settings = _settings()
    if workers is not None:
        settings = settings.model_copy(update={"workers": workers})
    try:
        serve_forever(settings, host=host, port=port)
    except AssistantError as error:
        raise _fail(error) from None


@app.command()
def gaps(
    top: Annotated[int, typer.Option(min=1, max=100, help="How many topics to list.")] = 10,
    examples: Annotated[int, typer.Option(min=0, max=10, help="Example questions shown per topic.")] = 3,
    last: Annotated[int, typer.Option(min=1, help="How many of the latest declined questions to group.")] = 10_000,
) -> None:
    """List the topics users ask about that the corpus does not cover, from the question log (redacted)."""
    from assistant.gaps import uncovered_topics
    from assistant.store import open_store

    settings = _settings()
    try:
        store = open_store(settings)
        try:
            declined = [entry.question for entry in store.questions(covered=False, limit=last)]
            answered = len(store.questions(covered=True, limit=last))
        finally:
            store.close()
    except AssistantError as error:
        raise _fail(error) from None
    if not declined:
        note = "" if settings.question_log else " (the question log is off: ASSISTANT_QUESTION_LOG=false)"
        out.print(f"No declined questions in the log{note}; {answered} answered.")
        return
    table = Table(
        title=f"Top uncovered topics: {len(declined)} declined questions ({answered} answered), by shared term"
    )
    table.add_column("#", justify="right")
    table.add_column("topic")
    table.add_column("questions", justify="right")
    table.add_column("examples (redacted)")
    for number, topic in enumerate(uncovered_topics(declined, top=top, examples=examples), start=1):
        # Questions are users' text: shown as plain text, never as Rich markup ("[email]" is a marker, not a style).
        table.add_row(str(number), Text(topic.label), str(topic.count), Text("\n".join(topic.examples)))
    out.print(table)


@app.command("eval")
def evaluate(
    dataset: Annotated[Path, typer.Option(help="JSONL dataset of known questions.")] = Path("evals/questions.jsonl"),
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for metrics.json, results.jsonl, report.html.")] = Path(
        "evals/out"
    ),
    k: Annotated[int, typer.Option("--k", min=1, max=50, help="Deepest k for retrieval metrics.")] = 10,
    gate: Annotated[bool, typer.Option("--gate", help="Exit 1 when a metric misses its threshold.")] = False,
    thresholds: Annotated[
        Path | None, typer.Option(help="Thresholds file for --gate (default: evals/thresholds.yaml).")
    ] = None,
) -> None:
    """Run the assistant over a dataset and write metrics, per-case results and an HTML report."""
    from assistant.evaluation.runner import DEFAULT_THRESHOLDS, run_eval_command

    try:
        code = run_eval_command(
            _settings(),
            dataset=dataset,
            out_dir=out_dir,
            k=k,
            gate=gate,
            thresholds_path=thresholds or DEFAULT_THRESHOLDS,
        )
    except AssistantError as error:
        raise _fail(error) from None
    raise typer.Exit(code=code)


if __name__ == "__main__":  # pragma: no cover
    app()
