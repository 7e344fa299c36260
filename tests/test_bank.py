"""The labelled question bank: well formed, broad, and apart from every eval set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.bank import eval_questions, load_bank, nearest_eval_questions
from assistant.corpus import ESCALATION_TRIGGER_IDS, Corpus
from assistant.errors import DatasetError
from assistant.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
EVAL_SETS = sorted((PROJECT_ROOT / "evals").glob("*.jsonl"))


def test_the_bank_is_large_and_covers_every_label(corpus: Corpus) -> None:
    bank = load_bank(corpus)
    sizes = bank.sizes()
    assert sizes["items"]["all"] >= 1500
    assert sizes["items"]["authors"] >= 10
    article_sections = {s.heading for s in corpus.sections if s.source.kind == "article"}
    assert article_sections <= set(sizes["section"])
    assert any(s.startswith("§ ") for s in sizes["section"]) and any(s.startswith("Article ") for s in sizes["section"])
    for trigger in ESCALATION_TRIGGER_IDS:
        assert sizes["trigger"][trigger] >= 50, trigger
    assert sizes["covered"]["not covered"] >= 200
    for kind in ("situation_two_turn", "near_miss", "out_of_scope", "follow_up", "other_language", "typo_slang"):
        assert sizes["kind"][kind] >= 50, kind


def _write(directory: Path, rows: list[dict[str, object]]) -> Path:
    directory.mkdir()
    (directory / "part.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return directory


ROW: dict[str, object] = {
    "id": "x-1",
    "author": "x",
    "kind": "article",
    "history": [],
    "message": "Does Spotify allow stem extraction?",
    "covered": True,
    "sections": ["Platform Terms and Conditions"],
    "gold": [{"file": "article.md", "text": "Spotify, Apple Music, and streaming platforms generally prohibit"}],
    "triggers": [],
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sections": ["Platform Terms"]}, "no section headed 'Platform Terms'"),
        ({"gold": [{"file": "article.md", "text": "Spotify forbids everything"}]}, "not found verbatim"),
        ({"triggers": ["lawsuit"]}, "unknown trigger"),
        ({"covered": False}, "covered message needs sections"),
        ({"kind": "chit-chat"}, "'kind'"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(
    corpus: Corpus, tmp_path: Path, change: dict[str, object], message: str
) -> None:
    directory = _write(tmp_path / "bank", [ROW, {**ROW, "id": "x-2", **change}])
    with pytest.raises(DatasetError, match=rf"part\.jsonl, line 2: .*{message}"):
        load_bank(corpus, directory)


def test_a_good_line_loads_with_its_gold_located(corpus: Corpus, tmp_path: Path) -> None:
    bank = load_bank(corpus, _write(tmp_path / "bank", [ROW]))
    (location,) = bank.gold["x-1"]
    assert corpus.text_of(location.source_id)[location.start : location.end] == ROW["gold"][0]["text"]  # type: ignore[index]


def test_a_changed_bank_has_another_fingerprint(corpus: Corpus, tmp_path: Path) -> None:
    first = load_bank(corpus, _write(tmp_path / "one", [ROW]))
    second = load_bank(corpus, _write(tmp_path / "two", [{**ROW, "message": "Does Spotify allow it?"}]))
    assert first.fingerprint != second.fingerprint


@pytest.mark.slow
def test_no_eval_question_or_close_paraphrase_is_in_the_bank(
    corpus: Corpus, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from assistant.embeddings import make_embeddings

    assert EVAL_SETS, "no eval sets found"
    embeddings = make_embeddings(settings)
    pairs = nearest_eval_questions(load_bank(corpus), eval_questions(EVAL_SETS), embeddings.embed_documents)
    with capsys.disabled():
        print(f"\nNearest bank/eval pairs (limit {settings.decisions.near_copy}):")
        for pair in pairs[:5]:
            print(f"  {pair.similarity:.3f}  {pair.message[:60]!r}  ~  {pair.eval_file}: {pair.question[:60]!r}")
    assert pairs[0].similarity < settings.decisions.near_copy
