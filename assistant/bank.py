"""The labelled question bank: what the assistant's decisions are fitted on.

``assistant/data/bank/*.jsonl`` holds user messages written from the corpus
alone, in many independent voices, each labelled with the sections and the
exact corpus sentences that answer it, the lawyer situations that are the
user's own, and whether the corpus covers it at all (the schema is in
``assistant/data/bank/README.md``). It is training data only: no eval set
shares a question with it (``tests/test_bank.py`` checks this).

Loading checks every line against the corpus, so a gold span that is not a
verbatim slice of its file, or a section that does not exist, is an error that
names the file and line.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.corpus import ESCALATION_TRIGGER_IDS, Corpus
from assistant.errors import DatasetError

Kind = Literal[
    "article",
    "statute",
    "treaty",
    "named_part",
    "list",
    "situation",
    "situation_two_turn",
    "near_miss",
    "out_of_scope",
    "follow_up",
    "other_language",
    "typo_slang",
    "injection",
]


class GoldSpan(BaseModel):
    """A passage that answers the message, copied verbatim from a corpus file."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    file: str
    text: str = Field(min_length=8)


class BankItem(BaseModel):
    """One labelled user message (with the user's earlier messages of the same chat)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str
    author: str = Field(description="Who wrote it: cross-validation folds never split an author.")
    kind: Kind
    history: list[str] = Field(description="The user's earlier messages, oldest first.")
    message: str = Field(min_length=1)
    covered: bool
    sections: list[str]
    gold: list[GoldSpan]
    triggers: list[str]


@dataclass(frozen=True)
class GoldLocation:
    """A gold span resolved to its source and character span."""

    source_id: str
    start: int
    end: int


@dataclass(frozen=True)
class Bank:
    """The loaded bank: its items, and where each gold span lies in the corpus."""

    items: tuple[BankItem, ...]
    gold: dict[str, tuple[GoldLocation, ...]]
    fingerprint: str

    def sizes(self) -> dict[str, dict[str, int]]:
        """How many items carry each label: per kind, per trigger, per section, and covered or not."""
        triggers = Counter(t for item in self.items for t in item.triggers)
        triggers["(none)"] = sum(1 for item in self.items if not item.triggers)
        return {
            "items": {"all": len(self.items), "authors": len({item.author for item in self.items})},
            "covered": dict(Counter("covered" if i.covered else "not covered" for i in self.items)),
            "kind": dict(sorted(Counter(item.kind for item in self.items).items())),
            "trigger": dict(sorted(triggers.items())),
            "section": dict(Counter(s for item in self.items for s in item.sections).most_common()),
        }


def bank_dir() -> Path:
    """The bank shipped with the package."""
    return Path(str(resources.files("assistant").joinpath("data/bank")))


def bank_files(directory: Path) -> list[Path]:
    """The bank's JSON Lines files, in name order."""
    return sorted(directory.glob("*.jsonl"))


def bank_fingerprint(directory: Path) -> str:
    """Hash of every bank file's name and bytes: changes whenever the bank does, so a changed bank retrains."""
    digest = hashlib.sha256()
    for path in bank_files(directory):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _problem(path: Path, line: int, message: str) -> DatasetError:
    return DatasetError(f"{path}, line {line}: {message}")


def _read(path: Path) -> Iterable[tuple[int, BankItem]]:
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, BankItem.model_validate(json.loads(raw))
        except json.JSONDecodeError as error:
            raise _problem(path, number, f"not valid JSON ({error.msg}).") from None
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "line"
            raise _problem(path, number, f"'{where}': {first['msg']}.") from None


def load_bank(corpus: Corpus, directory: Path | None = None, skip_unresolved: bool = False) -> Bank:
    """Read and check every bank file against the corpus.

    A label the corpus cannot resolve (a section it lacks, a gold span not in its file) is an error, unless
    ``skip_unresolved``: then such items are left out (for a corpus cut down on purpose, as in tests).
    """
    directory = directory or bank_dir()
    files = bank_files(directory)
    if not files:
        raise DatasetError(f"No question bank (*.jsonl) in {directory}; restore assistant/data/bank/.")
    by_file = {source.text_file: source.id for source in corpus.sources if source.text_file}
    by_file[str(corpus.article.text_file)] = corpus.article.id
    headings = {section.heading: section for section in corpus.sections}
    items: list[BankItem] = []
    gold: dict[str, tuple[GoldLocation, ...]] = {}
    seen: set[str] = set()
    for path in files:
        for number, item in _read(path):
            if item.id in seen:
                raise _problem(path, number, f"id '{item.id}' is used twice.")
            seen.add(item.id)
            unknown = set(item.triggers) - set(ESCALATION_TRIGGER_IDS)
            if unknown:
                raise _problem(
                    path, number, f"unknown trigger(s) {sorted(unknown)}; use {list(ESCALATION_TRIGGER_IDS)}."
                )
            missing = [s for s in item.sections if s not in headings]
            if missing and skip_unresolved:
                continue
            if missing:
                raise _problem(path, number, f"no section headed {missing[0]!r} in the corpus.")
            if item.covered != bool(item.gold) or item.covered != bool(item.sections):
                raise _problem(path, number, "a covered message needs sections and gold spans; others have neither.")
            locations = []
            for span in item.gold:
                source_id = by_file.get(span.file)
                if source_id is None:
                    raise _problem(path, number, f"gold file {span.file!r} is not a corpus text.")
                start = corpus.text_of(source_id).find(span.text)
                if start >= 0:
                    locations.append(GoldLocation(source_id, start, start + len(span.text)))
                elif not skip_unresolved:
                    raise _problem(path, number, f"gold span not found verbatim in {span.file}: {span.text[:60]!r}.")
            if len(locations) < len(item.gold):
                continue
            items.append(item)
            gold[item.id] = tuple(locations)
    return Bank(items=tuple(items), gold=gold, fingerprint=bank_fingerprint(directory))


@dataclass(frozen=True)
class Overlap:
    """A bank message and the eval question closest to it."""

    similarity: float
    bank_id: str
    message: str
    eval_file: str
    question: str


def eval_questions(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """(file name, text) of every question and earlier user message of the given eval sets."""
    found: list[tuple[str, str]] = []
    for path in paths:
        for raw in path.read_text(encoding="utf-8").splitlines():
            if not raw.strip():
                continue
            case = json.loads(raw)
            texts = [case.get("question") or case.get("user_input") or ""]
            texts += [t.get("content", "") for t in case.get("history") or [] if t.get("role") == "user"]
            found.extend((path.name, text) for text in texts if isinstance(text, str) and text.strip())
    return found


def nearest_eval_questions(
    bank: Bank, questions: list[tuple[str, str]], embed: Callable[[list[str]], list[list[float]]]
) -> list[Overlap]:
    """For every bank message (and earlier message), the eval question most like it, most alike first."""
    import numpy as np

    messages = [(item.id, text) for item in bank.items for text in (item.message, *item.history)]
    bank_vectors = np.asarray(embed([text for _, text in messages]), dtype=float)
    eval_vectors = np.asarray(embed([text for _, text in questions]), dtype=float)
    similarity = bank_vectors @ eval_vectors.T
    nearest = similarity.argmax(axis=1)
    pairs = [
        Overlap(float(similarity[i, j]), messages[i][0], messages[i][1], questions[j][0], questions[j][1])
        for i, j in enumerate(nearest)
    ]
    return sorted(pairs, key=lambda pair: -pair.similarity)
