"""Load and check an eval dataset (JSON Lines), one :class:`EvalCase` per line.

Every problem is reported as a :class:`DatasetError` naming the file, the line
and the field, because a dataset is edited by hand and a vague "invalid
dataset" would send its author hunting. Besides the project's own field names
the loader reads the ragas ones people already have (``user_input``, ragas
multi-turn message lists, ``reference_contexts``); unknown fields are ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.corpus import ESCALATION_TRIGGER_IDS, Corpus
from assistant.errors import DatasetError
from assistant.schemas import Message

DEFAULT_CATEGORY = "uncategorised"
_RAGAS_ROLES = {"human": "user", "user": "user", "ai": "assistant", "assistant": "assistant"}
_SPACE = re.compile(r"\s+")
_OPTIONAL = (
    "id",
    "history",
    "expected_sections",
    "must_escalate",
    "answerable",
    "must_include",
    "category",
    "reference_contexts",
)


class EvalCase(BaseModel):
    """One known question and what a correct reply must (and must not) do."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    id: str
    question: str
    history: list[Message] = Field(default_factory=list)
    expected_sections: list[str] = Field(default_factory=list)
    must_escalate: list[str] = Field(default_factory=list)
    answerable: bool = True
    must_include: list[str] = Field(default_factory=list)
    category: str = DEFAULT_CATEGORY
    reference_contexts: list[str] = Field(default_factory=list)
    line: int = Field(default=0, description="Line of the dataset file the case came from (1-based).")


def _where(path: Path, line: int) -> str:
    return f"{path}, line {line}"


def _field_path(loc: Iterable[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _from_ragas_messages(messages: list[Any], where: str) -> tuple[str, list[dict[str, str]]]:
    """A ragas multi-turn ``user_input``: the last human message is the question, the rest its history."""
    turns: list[dict[str, str]] = []
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise DatasetError(f"{where}: field 'user_input[{position}]' must be an object with a 'content' string.")
        kind = str(message.get("type", message.get("role", "")))
        if kind not in _RAGAS_ROLES:
            raise DatasetError(
                f"{where}: field 'user_input[{position}].type' is {kind!r}; use 'human' or 'ai' "
                "(tool messages cannot be replayed to the assistant)."
            )
        turns.append({"role": _RAGAS_ROLES[kind], "content": message["content"]})
    if not turns or turns[-1]["role"] != "user":
        raise DatasetError(f"{where}: field 'user_input' must end with a human message (the question to ask).")
    return turns[-1]["content"], turns[:-1]


def _normalise_record(record: dict[str, Any], line: int, where: str) -> dict[str, Any]:
    """Map ragas-style names onto the dataset's own and fill the defaults that depend on the line."""
    record = dict(record)
    if "user_input" in record:
        user_input = record.pop("user_input")
        if isinstance(user_input, list):
            question, history = _from_ragas_messages(user_input, where)
            if "history" in record and record["history"] != history:
                raise DatasetError(f"{where}: give the history either in 'user_input' or in 'history', not both.")
            record["history"] = history
            user_input = question
        if "question" in record and record["question"] != user_input:
            raise DatasetError(f"{where}: fields 'question' and 'user_input' disagree; keep one of them.")
        record["question"] = user_input
    if "question" not in record:
        raise DatasetError(f"{where}: field 'question' is missing (or give it as 'user_input').")
    for name in _OPTIONAL:
        if name in record and record[name] is None:
            del record[name]  # null reads as "not given", the same as a missing field
    record.setdefault("id", f"line-{line}")
    record["line"] = line
    return record


def parse_case(text: str, line: int, path: Path) -> EvalCase:
    """One dataset line as a case; raises :class:`DatasetError` naming the line and field."""
    where = _where(path, line)
    try:
        record = json.loads(text)
    except ValueError as error:
        raise DatasetError(f"{where}: not valid JSON ({error.args[0]}). Each line must hold one JSON object.") from None
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}.")
    record = _normalise_record(record, line, where)
    try:
        case = EvalCase.model_validate(record)
    except ValidationError as error:
        first = error.errors()[0]
        field = _field_path(first["loc"]) or "?"
        raise DatasetError(f"{where}: field '{field}': {first['msg']} (got {first.get('input')!r}).") from None
    unknown = [trigger for trigger in case.must_escalate if trigger not in ESCALATION_TRIGGER_IDS]
    if unknown:
        raise DatasetError(
            f"{where}: field 'must_escalate' names unknown trigger {unknown[0]!r}; "
            f"use one of {', '.join(ESCALATION_TRIGGER_IDS)}."
        )
    return case


def load_dataset(path: Path) -> list[EvalCase]:
    """Every case of a JSONL file (blank lines skipped); ids must be unique."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"Dataset {path} does not exist. Pass --dataset with the path of a JSONL file.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"Cannot read dataset {path}: {error}.") from None
    cases: list[EvalCase] = []
    seen: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        case = parse_case(text, number, path)
        if case.id in seen:
            raise DatasetError(
                f"{_where(path, number)}: field 'id' repeats {case.id!r} from line {seen[case.id]}; ids must be unique."
            )
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise DatasetError(f"Dataset {path} holds no cases. Add one JSON object per line.")
    return cases


def _normalised(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def check_against_corpus(cases: list[EvalCase], corpus: Corpus, path: Path) -> list[EvalCase]:
    """Fail on expected sections the corpus lacks; turn ragas ``reference_contexts`` into expected sections.

    Checked before the model loads, so a typo in a heading costs seconds, not a whole run.
    """
    headings = {section.heading for section in corpus.sections}
    bodies = [(section.heading, _normalised(section.text)) for section in corpus.sections]
    checked: list[EvalCase] = []
    for case in cases:
        where = _where(path, case.line)
        for position, heading in enumerate(case.expected_sections):
            if heading not in headings:
                raise DatasetError(
                    f"{where}: field 'expected_sections[{position}]' is {heading!r}, which is no section heading "
                    "in the corpus. Copy the heading exactly as written after '## ' in the source file."
                )
        if case.reference_contexts and not case.expected_sections:
            sections: list[str] = []
            for position, context in enumerate(case.reference_contexts):
                found = [heading for heading, body in bodies if _normalised(context) in body]
                if not found:
                    raise DatasetError(
                        f"{where}: field 'reference_contexts[{position}]' is not a passage of any corpus section; "
                        "give 'expected_sections' instead."
                    )
                sections.extend(heading for heading in found if heading not in sections)
            case = case.model_copy(update={"expected_sections": sections})
        checked.append(case)
    return checked
