"""Query handling before anything is ranked: clean, translate, mend typos, read explicit references.

The corpus and the embedding model are English, so words of a question in
Spanish, French, German, Italian or Portuguese gain their English equivalents
from a bilingual word list (``data/glossary.yaml``: a dictionary, not a
judgement), and misspelt words gain the corpus word they were meant to be.
References a question spells out ("§ 107", "Article 11") are read so the
ranker can match them to the sections they name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

from assistant.guardrails import clean_text
from assistant.tokens import STOPWORDS, words

_STATUTE_REF = re.compile(
    r"(?:§+\s*|\bsec(?:tion|\.)?\s+|\b17\s*u\.?s\.?c\.?\s*§*\s*)(?P<number>1[0-2]\d[a-z]?)\b", re.IGNORECASE
)
_TREATY_REF = re.compile(
    r"\b(?:article|art\.?|artikel|artículo|articolo|artigo)\s+(?P<number>\d{1,2})\b", re.IGNORECASE
)
TYPO_SIMILARITY = 75.0
"""How alike (rapidfuzz ratio, 0-100) a misspelt word and a corpus word must be for the one to mend the other.
75 mends one wrong, missing or swapped letter in a word of eight ("seperation", "licnese") and leaves most
unrelated short words alone; ``tests/test_query.py`` pins both sides."""


@dataclass(frozen=True)
class PreparedQuery:
    """A question made ready for ranking."""

    original: str
    text: str
    """The question with English equivalents of foreign words and mended typos appended."""
    statute_sections: tuple[str, ...] = ()
    """Section numbers of 17 U.S.C. the question cites ("107", "114")."""
    treaty_articles: tuple[str, ...] = ()
    """Article numbers the question cites ("11")."""


@cache
def _glossary() -> dict[str, Any]:
    data = yaml.safe_load(resources.files("assistant").joinpath("data/glossary.yaml").read_text(encoding="utf-8"))
    return {"phrases": data["phrases"], "words": data["words"]}


def translate(text: str) -> str:
    """Append English equivalents of the foreign words and phrases the glossary knows."""
    glossary = _glossary()
    lowered = text.lower()
    extra = [english for phrase, english in glossary["phrases"].items() if phrase in lowered]
    extra += [glossary["words"][w] for w in words(text) if w in glossary["words"]]
    extra = [e for e in dict.fromkeys(extra) if e.lower() not in lowered]
    return f"{text} {' '.join(extra)}" if extra else text


class QueryPreparer:
    """Turns questions into ranking queries; knows the corpus vocabulary to mend typos."""

    def __init__(self, vocabulary: Mapping[str, int]) -> None:
        self._vocabulary = vocabulary
        self._by_initial: dict[str, list[str]] = {}
        for word in vocabulary:
            self._by_initial.setdefault(word[:1], []).append(word)

    @cache  # noqa: B019 - one preparer per assistant; the cache is bounded by distinct words asked
    def correct(self, word: str) -> str:
        """The closest corpus word for a misspelt one ('seperation' -> 'separation'), the commoner on a tie."""
        if len(word) < 4 or word in self._vocabulary or word in STOPWORDS or not word.isalpha():
            return word
        pool = self._by_initial.get(word[:1], [])
        matches = process.extract(word, pool, scorer=fuzz.ratio, score_cutoff=TYPO_SIMILARITY, limit=5)
        if not matches:
            return word
        candidates: list[str] = [str(m[0]) for m in matches]
        return min(candidates, key=lambda m: (OSA.distance(word, m), -self._vocabulary[m], m))

    def prepare(self, question: str) -> PreparedQuery:
        """Clean, translate and correct a question, and read the references it spells out."""
        text = translate(clean_text(question))
        fixes = [fixed for w in words(text) if (fixed := self.correct(w)) != w]
        if fixes:
            text = f"{text} {' '.join(dict.fromkeys(fixes))}"
        return PreparedQuery(
            original=question,
            text=text,
            statute_sections=tuple(dict.fromkeys(m.group("number").lower() for m in _STATUTE_REF.finditer(text))),
            treaty_articles=tuple(dict.fromkeys(m.group("number") for m in _TREATY_REF.finditer(text))),
        )
