"""The ``assistant`` command line: build the index, ask, serve, evaluate.

Domain errors are turned into a message and exit code 2 here, once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markdown import Markdown

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
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when the index is up to date.")] = False,
) -> None:
    """Build the Chroma index from corpus/ (only when missing or stale, unless --force)."""
    from assistant.assistant import build_or_open_index

    settings = _settings()
    try:
        build = build_or_open_index(settings, force=force)
    except AssistantError as error:
        raise _fail(error) from None
    manifest = build.manifest
    out.print(
        f"Index ready: {manifest['chunks']} chunks, model {manifest['embedding_model']}, "
        f"built {manifest['built_at']} in {build.path}"
    )


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
    from assistant.assistant import Assistant

    turns = _read_history(history)
    try:
        answer = Assistant(_settings()).ask(question, turns)
    except AssistantError as error:
        raise _fail(error) from None
    if as_json:
        sys.stdout.write(answer.model_dump_json(indent=2) + "\n")
    else:
        out.print(Markdown(answer.rendered))
    if answer.input_problem is not None:
        raise typer.Exit(code=2)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default from settings: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings: 7860).")] = None,
) -> None:
    """Serve the chat UI, the help widget and the HTTP API on one server."""
    from assistant.server import run_server

    try:
        run_server(_settings(), host=host, port=port)
    except AssistantError as error:
        raise _fail(error) from None


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
