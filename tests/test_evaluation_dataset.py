from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from assistant.corpus import Corpus
from assistant.errors import DatasetError
from assistant.evaluation.dataset import DEFAULT_CATEGORY, EvalCase, check_against_corpus, load_dataset, parse_case

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_full_record_loads_every_field(tmp_path: Path) -> None:
    record = {
        "id": "esc-1",
        "question": "I plan to release this track commercially.",
        "history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        "expected_sections": ["When to Ask a Lawyer"],
        "must_escalate": ["commercial_release"],
        "answerable": True,
        "must_include": ["lawyer"],
        "category": "escalation",
    }
    [case] = load_dataset(write_jsonl(tmp_path / "d.jsonl", [record]))
    assert case.id == "esc-1"
    assert [m.role for m in case.history] == ["user", "assistant"]
    assert case.expected_sections == ["When to Ask a Lawyer"]
    assert case.must_escalate == ["commercial_release"]
    assert case.must_include == ["lawyer"]
    assert case.category == "escalation"
    assert case.line == 1


def test_missing_optional_fields_get_defaults_and_unknown_fields_are_ignored(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "What is a stem?", "reference": "x", "rubrics": {}}])
    [case] = load_dataset(path)
    assert case.id == "line-1"
    assert case.history == []
    assert case.expected_sections == []
    assert case.must_escalate == []
    assert case.must_include == []
    assert case.answerable is True
    assert case.category == DEFAULT_CATEGORY == "uncategorised"


def test_null_optional_field_reads_as_missing(tmp_path: Path) -> None:
    [case] = load_dataset(write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "category": None, "history": None}]))
    assert case.category == "uncategorised"
    assert case.history == []


def test_ragas_user_input_is_the_question(tmp_path: Path) -> None:
    [case] = load_dataset(write_jsonl(tmp_path / "d.jsonl", [{"user_input": "Is sampling legal?", "response": "?"}]))
    assert case.question == "Is sampling legal?"


def test_ragas_multi_turn_user_input_becomes_question_and_history(tmp_path: Path) -> None:
    messages = [
        {"content": "Can stems from YouTube get flagged?", "type": "human"},
        {"content": "Yes, by Content ID.", "type": "ai"},
        {"content": "what about Spotify?", "type": "human"},
    ]
    [case] = load_dataset(write_jsonl(tmp_path / "d.jsonl", [{"user_input": messages}]))
    assert case.question == "what about Spotify?"
    assert [(m.role, m.content) for m in case.history] == [
        ("user", "Can stems from YouTube get flagged?"),
        ("assistant", "Yes, by Content ID."),
    ]


def test_ragas_multi_turn_must_end_with_a_human_message(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"user_input": [{"content": "hi", "type": "ai"}]}])
    with pytest.raises(DatasetError, match=r"line 1: field 'user_input' must end with a human message"):
        load_dataset(path)


def test_question_and_user_input_that_disagree_are_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "a", "user_input": "b"}])
    with pytest.raises(DatasetError, match="disagree"):
        load_dataset(path)


def test_missing_question_names_line_and_field(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "ok"}, "", {"id": "x", "answerable": True}])
    with pytest.raises(DatasetError, match=r"d\.jsonl, line 3: field 'question' is missing"):
        load_dataset(path)


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [
        ("question", 42, "question"),
        ("answerable", "yes", "answerable"),
        ("expected_sections", "Introduction", "expected_sections"),
        ("must_include", ["ok", 3], "must_include[1]"),
        ("history", [{"role": "bot", "content": "x"}], "history[0].role"),
        ("history", [{"role": "user"}], "history[0].content"),
        ("category", 7, "category"),
    ],
)
def test_wrong_type_names_line_and_field(tmp_path: Path, field: str, value: Any, shown: str) -> None:
    record = {"question": "q", field: value}
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "fine"}, record])
    with pytest.raises(DatasetError) as raised:
        load_dataset(path)
    assert f"line 2: field '{shown}'" in str(raised.value)


@settings(max_examples=40, deadline=None)
@given(
    field=st.sampled_from(["question", "answerable", "expected_sections", "must_escalate", "must_include", "category"]),
    value=st.one_of(st.integers(), st.floats(allow_nan=False), st.dictionaries(st.text(max_size=3), st.integers())),
)
def test_any_non_matching_type_is_reported_for_its_field(field: str, value: Any) -> None:
    with pytest.raises(DatasetError) as raised:
        parse_case(json.dumps({"question": "q", field: value}), 5, Path("set.jsonl"))
    assert f"set.jsonl, line 5: field '{field}" in str(raised.value)


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "a"}, '{"question": "b",'])
    with pytest.raises(DatasetError, match=r"line 2: not valid JSON"):
        load_dataset(path)


def test_non_object_line_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"line 1: expected a JSON object, got list"):
        load_dataset(write_jsonl(tmp_path / "d.jsonl", ['["q"]']))


def test_unknown_trigger_is_an_error_listing_the_valid_ones(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "q", "must_escalate": ["sue_everyone"]}])
    with pytest.raises(DatasetError, match=r"line 1: field 'must_escalate'.*'sue_everyone'.*commercial_release"):
        load_dataset(path)


def test_duplicate_ids_are_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"id": "a", "question": "1"}, {"id": "a", "question": "2"}])
    with pytest.raises(DatasetError, match=r"line 2: field 'id' repeats 'a' from line 1"):
        load_dataset(path)


def test_empty_and_missing_files_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="holds no cases"):
        load_dataset(tmp_path / "empty.jsonl")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "absent.jsonl")


def test_expected_section_must_exist_in_the_corpus(tmp_path: Path, corpus: Corpus) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [{"question": "a", "expected_sections": ["Introduction"]}, {"question": "b", "expected_sections": ["Intro"]}],
    )
    cases = load_dataset(path)
    with pytest.raises(DatasetError, match=r"line 2: field 'expected_sections\[0\]' is 'Intro'"):
        check_against_corpus(cases, corpus, path)
    assert check_against_corpus(cases[:1], corpus, path) == cases[:1]


def test_ragas_reference_contexts_become_expected_sections(tmp_path: Path, corpus: Corpus) -> None:
    context = "Extracting stems from a streaming service recording and using them in a new production likely violates"
    path = write_jsonl(tmp_path / "d.jsonl", [{"user_input": "Spotify?", "reference_contexts": [context]}])
    [case] = check_against_corpus(load_dataset(path), corpus, path)
    assert case.expected_sections == ["Platform Terms and Conditions"]


def test_reference_context_not_in_the_corpus_is_an_error(tmp_path: Path, corpus: Corpus) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"user_input": "q", "reference_contexts": ["No such passage anywhere."]}])
    with pytest.raises(DatasetError, match=r"line 1: field 'reference_contexts\[0\]'"):
        check_against_corpus(load_dataset(path), corpus, path)


def test_the_project_dataset_is_valid(corpus: Corpus) -> None:
    path = PROJECT_ROOT / "evals" / "questions.jsonl"
    cases = check_against_corpus(load_dataset(path), corpus, path)
    assert len(cases) >= 120
    assert any(not case.answerable for case in cases)
    assert any(case.must_escalate for case in cases)
    assert any(case.category == "near_miss" for case in cases)


def test_the_held_out_dataset_is_valid_and_shares_no_question_with_the_development_set(corpus: Corpus) -> None:
    heldout_path = PROJECT_ROOT / "evals" / "heldout.jsonl"
    heldout = check_against_corpus(load_dataset(heldout_path), corpus, heldout_path)
    development = load_dataset(PROJECT_ROOT / "evals" / "questions.jsonl")
    assert len(heldout) >= 50
    assert {c.question.casefold() for c in heldout}.isdisjoint(c.question.casefold() for c in development)
    article = corpus.text_of("article").lower()
    for case in heldout:
        for phrase in case.must_include:
            assert phrase in article, f"{case.id}: '{phrase}' is not article text"


def test_the_second_held_out_dataset_is_valid_and_shares_no_question_with_the_others(corpus: Corpus) -> None:
    path = PROJECT_ROOT / "evals" / "heldout2.jsonl"
    cases = check_against_corpus(load_dataset(path), corpus, path)
    others = [
        *load_dataset(PROJECT_ROOT / "evals" / "questions.jsonl"),
        *load_dataset(PROJECT_ROOT / "evals" / "heldout.jsonl"),
    ]
    assert len(cases) >= 58

    def asked(case: EvalCase) -> tuple[str, str]:  # "What about Spotify?" after another turn is another case
        return case.question.casefold(), repr(case.history)

    assert {asked(c) for c in cases}.isdisjoint(asked(c) for c in others)
    sections = {section.heading: section.text.lower() for section in corpus.sections}
    for case in cases:
        for phrase in case.must_include:
            # Each phrase is text of one of the sections the case expects, so a correct answer can quote it.
            assert any(phrase in sections[heading] for heading in case.expected_sections), f"{case.id}: '{phrase}'"
