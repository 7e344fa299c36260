"""Query handling before retrieval: clean, translate, correct typos, detect what is asked about.

The corpus and the embedding model are English and the article is tiny next to
the statute, so a question is turned into an English query and tagged with
the sources it points at ("§ 107", "the WIPO treaty", "US law") before
retrieval ranks anything.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

from assistant.corpus import SOURCES_HEADING
from assistant.guardrails import clean_text

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_STATUTE_REF = re.compile(
    r"(?:§+\s*|\bsec(?:tion|\.)?\s+|\b17\s*u\.?s\.?c\.?\s*§*\s*)(?P<number>1[0-2]\d[a-z]?)\b", re.IGNORECASE
)
_TREATY_REF = re.compile(
    r"\b(?:article|art\.?|artikel|artículo|articolo|artigo)\s+(?P<number>\d{1,2})\b", re.IGNORECASE
)
_DEFINITION_CUES = re.compile(
    r"\b(?:define[sd]?|definitions?|meaning of|legally speaking|legal meaning|what counts as|what is meant by)\b",
    re.IGNORECASE,
)
_STATUTE_CUES = re.compile(
    r"\b(?:u\.?s\.?c|copyright act|statute|statutory|title 17|us law|u\.s\. law|american law|us copyright law|"
    r"federal law|congress|section \d|subsection|the act)\b|§",
    re.IGNORECASE,
)
_TREATY_CUES = re.compile(
    r"\b(?:wipo|wct|treaty|treaties|international law|internationally|diplomatic conference)\b", re.IGNORECASE
)
# Questions about the article's own references ("what sources does it cite?", "is there a link to…"),
# answered from its numbered Sources list. A lone "source" is left out: "the source of my stems" is not one.
_SOURCES_CUES = re.compile(
    r"\b(?:sources|cites?|cited|citations?|references?|referenced|links?|urls?|websites?|bibliograph\w*|"
    r"further reading|based on|where (?:can|could|do|should|would) (?:i|you|one|we) (?:read|look up)|"
    r"read (?:more|the (?:actual |full |original )?(?:text|statute|law|act|treaty)))\b",
    re.IGNORECASE,
)
STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "s",
        "t",
        "don",
        "ll",
        "m",
        "re",
        "ve",
        "d",
        "im",
        "ive",
        "id",
        "youre",
        "also",
        "get",
        "got",
        "really",
        "anything",
        "something",
        "thing",
        "things",
        "say",
        "says",
        "said",
        "tell",
        "know",
        "want",
        "wants",
        "like",
        "lot",
        "much",
        "many",
        "okay",
        "ok",
        "hey",
        "hi",
        "please",
        "thanks",
        "thank",
        "one",
        "ones",
        # "The article says…" names the document being asked about, not the statute's "useful article"
        # or the treaty's "Article 8" (numbered treaty articles are read before words are dropped).
        "article",
        "articles",
    ]
)


@dataclass(frozen=True)
class PreparedQuery:
    """A question made ready for retrieval, with what the conversation adds.

    ``focus_terms`` are the new words of a follow-up ("what about *Spotify*?"),
    ``already_said`` the sentences the user was just given ("tell me more"), and
    ``preferred_sections`` the sections that speak to the user's situation (or to a question
    about the article's sources), and
    ``primary_sections`` the one of them that speaks to each situation most directly.
    """

    original: str
    text: str
    statute_sections: tuple[str, ...] = ()
    treaty_articles: tuple[str, ...] = ()
    wants_statute: bool = False
    wants_treaty: bool = False
    wants_definition: bool = False
    wants_sources: bool = False
    content_terms: tuple[str, ...] = field(default=())
    preferred_sections: tuple[str, ...] = ()
    primary_sections: tuple[str, ...] = ()
    focus_terms: tuple[str, ...] = ()
    already_said: frozenset[str] = frozenset()

    @property
    def wants_law(self) -> bool:
        """True when the question is about the statute or the treaty rather than the article."""
        return self.wants_statute or self.wants_treaty


def words(text: str) -> list[str]:
    """Lowercase word tokens (accents kept)."""
    return [w.replace("’", "'") for w in _WORD.findall(text.lower())]


def stem(word: str) -> str:
    """A light suffix stripper: enough to match 'released'/'release', 'separation'/'separate', 'stems'/'stem'."""
    for suffix, minimum in (
        ("ations", 5),
        ("ation", 5),
        ("ings", 5),
        ("ing", 5),
        ("ies", 4),
        ("ed", 5),
        ("es", 5),
        ("ly", 5),
        ("s", 4),
    ):
        if word.endswith(suffix) and len(word) - len(suffix) >= minimum - 1:
            word = word[: -len(suffix)] + {"ies": "y", "ation": "at", "ations": "at"}.get(suffix, "")
            break
    return word[:-1] if len(word) > 4 and word.endswith("e") else word


def content_tokens(text: str) -> list[str]:
    """Stemmed, stopword-free tokens for lexical matching."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]


@cache
def _glossary() -> dict[str, Any]:
    data = yaml.safe_load(resources.files("assistant").joinpath("data/glossary.yaml").read_text(encoding="utf-8"))
    return {"phrases": data["phrases"], "words": data["words"], "synonyms": data["synonyms"]}


def translate(text: str) -> str:
    """Append English equivalents of the foreign words and phrases the glossary knows."""
    glossary = _glossary()
    lowered = text.lower()
    extra = [english for phrase, english in glossary["phrases"].items() if phrase in lowered]
    extra += [glossary["words"][w] for w in words(text) if w in glossary["words"]]
    extra += [
        english for term, english in glossary["synonyms"].items() if re.search(rf"\b{re.escape(term)}\b", lowered)
    ]
    extra = [e for e in dict.fromkeys(extra) if e.lower() not in lowered]
    return f"{text} {' '.join(extra)}" if extra else text


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: a swap of neighbours ('contnet') counts as one edit."""
    rows = [list(range(len(b) + 1))] + [[i] + [0] * len(b) for i in range(1, len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[len(a)][len(b)]


class QueryPreparer:
    """Turns questions into retrieval queries; knows the corpus vocabulary to mend typos."""

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
        matches = difflib.get_close_matches(word, pool, n=5, cutoff=0.75)
        if not matches:
            return word
        return min(matches, key=lambda m: (edit_distance(word, m), -self._vocabulary[m]))

    def prepare(self, question: str) -> PreparedQuery:
        """Clean, translate and correct a question, and note which sources it points at."""
        text = translate(clean_text(question))
        corrected = [self.correct(w) for w in words(text)]
        fixes = [c for w, c in zip(words(text), corrected, strict=True) if c != w]
        if fixes:
            text = f"{text} {' '.join(fixes)}"
        statute = tuple(dict.fromkeys(m.group("number").lower() for m in _STATUTE_REF.finditer(text)))
        wants_sources = bool(_SOURCES_CUES.search(text))
        treaty = tuple(dict.fromkeys(m.group("number") for m in _TREATY_REF.finditer(text)))
        return PreparedQuery(
            original=question,
            text=text,
            statute_sections=statute,
            treaty_articles=treaty,
            wants_statute=bool(statute) or bool(_STATUTE_CUES.search(text)),
            wants_treaty=bool(treaty) or bool(_TREATY_CUES.search(text)),
            wants_definition=bool(_DEFINITION_CUES.search(question)),
            content_terms=tuple(dict.fromkeys(content_tokens(text))),
            # A question about the article's references is answered from its list of sources.
            preferred_sections=(SOURCES_HEADING,) if wants_sources else (),
            wants_sources=wants_sources,
        )
