"""Checks a model's sentence against the passages it cites, before any user sees it.

A generated sentence reaches the user only when every test below passes; each is stated here, and the one
with a threshold is fitted (:mod:`assistant.decisions.support`):

1. **Plain text.** Markup is not plain prose: a sentence with HTML (tags, comments, ``<details>``) is dropped
   whole, since hidden or zero-size text cannot be shown faithfully. Markdown images are removed, and links
   keep only their text unless they point at a URL the corpus itself gives. Invisible characters are removed.
2. **Exact quotes.** The sentence names passages by id and gives quotes; each quote must be an exact substring
   of a passage the sentence cites (runs of white space count as one space, nothing else is forgiven). A quote
   found only in another passage fails.
3. **Supported by its quotes.** A sentence that repeats its quote (or a whole sentence of it) word for word
   says nothing the quote does not. Any other sentence is judged by a logistic model of P(supported) on
   content-word containment, embedding similarity of sentence and quotes, what the sentence adds (new content
   words, an added negation or number, and which words it adds) and how much of its quotes it covers. It is
   fitted on labelled supported and unsupported pairs (:mod:`assistant.decisions.support`), and its threshold
   is the lowest whose out-of-fold precision reaches ``support_precision``; the report gives the precision and
   recall at that threshold.
4. **Hedges kept.** When a quote qualifies its claim ("arguably", "may", "not clearly resolved"; the lists are
   ``data/hedges.yaml``), the sentence must keep a qualification.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml
from langchain_core.documents import Document
from scipy import sparse

from assistant.chunking import split_sentences
from assistant.frozen import Logistic, TokenCounts, freeze
from assistant.guardrails import clean_text
from assistant.stacking import hstack_rows
from assistant.tokens import content_tokens, stem, words

if TYPE_CHECKING:  # the support model is fitted with scikit-learn, then frozen: serving never imports it
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

_HTML = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>|<!--|-->|&lt;|&#", re.IGNORECASE)
_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<(https?://[^>\s]+)>")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>()\[\]]+", re.IGNORECASE)
_MARKERS = re.compile(r"\s*\[\s*\d+(?:\s*[,;]\s*\d+)*\s*\]")
_SPACE = re.compile(r"\s+")
_NUMBER = re.compile(r"\d+(?:\.\d+)*")
_NEGATIONS = frozenset({"not", "no", "never", "none", "nothing", "neither", "nor", "cannot", "without"})


@cache
def hedge_terms(kind: str) -> tuple[tuple[str, ...], ...]:
    """Words and phrases of ``data/hedges.yaml`` as word tuples: ``claim`` qualifies a quote; ``kept`` keeps it."""
    data = yaml.safe_load(resources.files("assistant").joinpath("data/hedges.yaml").read_text("utf-8"))
    terms = data["claim"] + (data["kept"] if kind == "kept" else [])
    return tuple(tuple(words(term)) for term in terms)


def _has_term(tokens: Sequence[str], terms: Sequence[tuple[str, ...]]) -> bool:
    joined = " " + " ".join(tokens) + " "
    return any(" " + " ".join(term) + " " in joined for term in terms)


def hedged(text: str, kind: str = "claim") -> bool:
    """Whether the text qualifies what it says: a ``claim`` hedge occurs in it (``kept``: any qualification)."""
    return _has_term(words(text), hedge_terms(kind))


def negations(text: str) -> int:
    """How many negating words the text has (contractions such as "isn't" count)."""
    return sum(1 for w in words(text) if w in _NEGATIONS or w.endswith("n't"))


def plain_sentence(text: str, allowed_urls: frozenset[str]) -> str | None:
    """The model's sentence as plain text, or None when it carries HTML (test 1)."""
    text = clean_text(text)
    if _HTML.search(text):
        return None
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(lambda m: m.group(0) if m.group(2) in allowed_urls else m.group(1), text)
    text = _AUTOLINK.sub(lambda m: m.group(0) if m.group(1) in allowed_urls else " ", text)
    text = _URL.sub(lambda m: m.group(0) if m.group(0).rstrip(".,;:") in allowed_urls else " ", text)
    text = _MARKERS.sub("", text)
    return _SPACE.sub(" ", text).strip() or None


def locate(quote: str, passage: str) -> tuple[int, int] | None:
    """Where ``quote`` occurs in ``passage`` (white-space runs matching any white space), or None (test 2)."""
    parts = [re.escape(p) for p in quote.split()]
    if not parts:
        return None
    match = re.search(r"\s+".join(parts), passage)
    return (match.start(), match.end()) if match else None


def _normal(text: str) -> str:
    return _SPACE.sub(" ", text).strip().strip("\"'“”‘’").rstrip(".;:,").casefold()


def repeats_a_quote(sentence: str, quotes: Sequence[str]) -> bool:
    """Whether the sentence is one of its quotes, or a whole sentence of one, word for word (test 3's first part)."""
    said = _normal(sentence)
    return any(said == _normal(part) for quote in quotes for part in [quote, *split_sentences(quote)])


def containment(sentence: str, quotes: Sequence[str]) -> float:
    """The share of the sentence's content words (stemmed) that its quotes contain."""
    said = set(content_tokens(sentence))
    if not said:
        return 0.0
    quoted = set(content_tokens(" ".join(quotes)))
    return len(said & quoted) / len(said)


def adds_number(sentence: str, quotes: Sequence[str]) -> bool:
    """Whether the sentence states a number its quotes do not contain."""
    quoted = set(_NUMBER.findall(" ".join(quotes)))
    return any(n not in quoted for n in _NUMBER.findall(sentence))


def drops_hedge(sentence: str, quotes: Sequence[str]) -> bool:
    """Whether a quote qualifies its claim and the sentence does not (test 4)."""
    return any(hedged(q) for q in quotes) and not hedged(sentence, "kept")


def adds_negation(sentence: str, quotes: Sequence[str]) -> bool:
    """Whether the sentence negates more often than all its quotes together (test 5)."""
    return negations(sentence) > sum(negations(q) for q in quotes)


def novel_words(sentence: str, quotes: Sequence[str]) -> list[str]:
    """The sentence's words (stemmed, stop words kept) that its quotes do not use: what it adds."""
    quoted = {stem(w) for w in words(" ".join(quotes))}
    return [stem(w) for w in words(sentence) if stem(w) not in quoted]


def _identity(tokens: list[str]) -> list[str]:
    return tokens


def novel_word_vectorizer() -> CountVectorizer:
    """Counts which words a sentence adds to its quotes (binary; words seen in at least two pairs)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(analyzer=_identity, binary=True, min_df=2)


def support_matrix(
    sentences: Sequence[str],
    quotes: Sequence[Sequence[str]],
    similarities: np.ndarray,
    vectorizer: TokenCounts | CountVectorizer,
) -> sparse.csr_matrix:
    """The support model's inputs for each (sentence, quotes) pair.

    Content-word containment and embedding similarity (and their product); how much the sentence adds
    (its new content words, log-scaled) and how much of the quotes it covers; whether it adds a negation or
    a number; and which words it adds (a negation, "always", "court", a swapped detail).
    """
    pairs = list(zip(sentences, quotes, strict=True))
    contained = np.array([containment(t, q) for t, q in pairs])
    added = np.array([len(set(content_tokens(t)) - set(content_tokens(" ".join(q)))) for t, q in pairs])
    covered = np.array([containment(" ".join(q), [t]) for t, q in pairs])
    negated = np.array([adds_negation(t, q) for t, q in pairs], dtype=float)
    numbered = np.array([adds_number(t, q) for t, q in pairs], dtype=float)
    dense = np.column_stack(
        [contained, similarities, contained * similarities, np.log1p(added), covered, negated, numbered]
    )
    bag = vectorizer.transform([novel_words(t, q) for t, q in pairs])
    return hstack_rows([dense, bag])


@dataclass(frozen=True)
class SupportModel:
    """A fitted logistic model of P(supported | sentence, quotes) and the threshold it must clear.

    Given scikit-learn's fitted vectoriser and classifier, it keeps their frozen forms (:mod:`assistant.frozen`).
    """

    vectorizer: TokenCounts
    classifier: Logistic
    threshold: float
    report: dict[str, Any]

    def __init__(
        self,
        vectorizer: TokenCounts | CountVectorizer,
        classifier: Logistic | LogisticRegression,
        threshold: float,
        report: dict[str, Any] | None = None,
    ) -> None:
        object.__setattr__(self, "vectorizer", freeze(vectorizer))
        object.__setattr__(self, "classifier", freeze(classifier))
        object.__setattr__(self, "threshold", threshold)
        object.__setattr__(self, "report", report if report is not None else {})

    def probabilities(
        self, sentences: Sequence[str], quotes: Sequence[Sequence[str]], similarities: np.ndarray
    ) -> np.ndarray:
        """P(supported) for each pair."""
        features = support_matrix(sentences, quotes, similarities, self.vectorizer)
        return np.asarray(self.classifier.predict_proba(features)[:, 1])


@dataclass(frozen=True)
class QuotedPassage:
    """A passage as the model saw it: its id in the prompt, and the chunk."""

    n: int
    document: Document


@dataclass(frozen=True)
class Claim:
    """One sentence a model wrote, with the passage ids and the quotes it says it rests on."""

    text: str
    passages: tuple[int, ...]
    quotes: tuple[str, ...]


@dataclass(frozen=True)
class Verdict:
    """What the verifier made of one claim."""

    claim: Claim
    text: str
    """The sentence as it would be shown (plain text, links stripped); empty when it has none."""
    kept: bool
    reason: str
    """Why it was dropped ('' when kept)."""
    spans: tuple[tuple[QuotedPassage, int, int], ...] = ()
    """Each quote's passage and its span in that passage's text."""
    support: float = 0.0


class Verifier:
    """Applies the five tests to a model's sentences."""

    def __init__(
        self,
        model: SupportModel,
        embed: Callable[[list[str]], list[list[float]]],
        allowed_urls: frozenset[str],
    ) -> None:
        self._model = model
        self._embed = embed
        self._allowed = allowed_urls

    def verify(self, claims: Sequence[Claim], passages: Sequence[QuotedPassage]) -> list[Verdict]:
        """A verdict for each claim, in order."""
        by_id = {p.n: p for p in passages}
        verdicts: list[Verdict | None] = []
        pending: list[tuple[int, str, list[str]]] = []
        staged: dict[int, Verdict] = {}
        for i, claim in enumerate(claims):
            verdict, spans, text = self._structural(claim, by_id)
            if verdict is not None:
                verdicts.append(verdict)
                continue
            verdicts.append(None)
            quotes = [p.document.page_content[a:b] for p, a, b in spans]
            staged[i] = Verdict(claim, text, True, "", tuple(spans))
            pending.append((i, text, quotes))
        if pending:
            texts = [t for _, t, _ in pending] + [" ".join(q) for _, _, q in pending]
            vectors = np.asarray(self._embed(texts), dtype=float)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            half = len(pending)
            similarity = np.sum(vectors[:half] * vectors[half:], axis=1)
            probability = self._model.probabilities([t for _, t, _ in pending], [q for _, _, q in pending], similarity)
            for (i, text, quotes), p in zip(pending, probability, strict=True):
                base = staged[i]
                reason = ""
                if repeats_a_quote(text, quotes):
                    p = 1.0
                elif p < self._model.threshold:
                    reason = f"not supported by its quotes (score {p:.2f} < {self._model.threshold:.2f})"
                elif drops_hedge(text, quotes):
                    reason = "drops the qualification its quote makes"
                verdicts[i] = Verdict(base.claim, text, not reason, reason, base.spans, float(p))
        return [v for v in verdicts if v is not None]

    def _structural(
        self, claim: Claim, by_id: dict[int, QuotedPassage]
    ) -> tuple[Verdict | None, list[tuple[QuotedPassage, int, int]], str]:
        """Tests 1 and 2; a verdict when the claim already fails."""
        text = plain_sentence(claim.text, self._allowed)
        if text is None:
            return Verdict(claim, "", False, "contains markup"), [], ""
        if not content_tokens(text):
            return Verdict(claim, text, False, "says nothing"), [], text
        cited = [by_id[n] for n in dict.fromkeys(claim.passages) if n in by_id]
        if not cited:
            return Verdict(claim, text, False, "cites no passage it was given"), [], text
        quotes = [q for q in claim.quotes if q.strip()]
        if not quotes:
            return Verdict(claim, text, False, "gives no quote"), [], text
        spans: list[tuple[QuotedPassage, int, int]] = []
        for quote in quotes:
            found = next(
                ((p, *span) for p in cited if (span := locate(quote, p.document.page_content)) is not None), None
            )
            if found is None:
                return Verdict(claim, text, False, "a quote is not in the passages it cites"), [], text
            spans.append(found)
        return None, spans, text
