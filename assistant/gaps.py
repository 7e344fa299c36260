"""Group the questions the assistant declined into topics, to show what the corpus does not cover.

Deliberately simple and explainable: each declined question is reduced to its content terms with the
project's own tokeniser (``assistant/tokens.py``: lower-cased, stop words dropped, Snowball-stemmed, so
"licence", "licences" and "licensing" meet). The term shared by the most declined questions becomes the first
topic and takes all of them; the same is repeated on the questions left, until none share a term. A topic is
named by its term (as the word users wrote most often), followed by the term its questions share next most.
Questions that share no term with any other are counted as "other". The redaction markers
(``[email]``, ``[url]``, ``[phone]``) are not topics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from assistant.tokens import content_tokens, stem, words

IGNORED_TERMS = frozenset(stem(word) for word in ("email", "url", "phone"))
OTHER = "other"


@dataclass
class Topic:
    """Declined questions that share a content term."""

    label: str
    count: int
    examples: list[str] = field(default_factory=list)


def _terms(question: str) -> set[str]:
    return {term for term in content_tokens(question) if term not in IGNORED_TERMS}


def uncovered_topics(questions: Sequence[str], top: int = 10, examples: int = 3) -> list[Topic]:
    """The ``top`` largest topics among ``questions`` (newest first), each with up to ``examples`` of them."""
    surface: dict[str, Counter[str]] = {}
    for question in questions:
        for word in words(question):
            surface.setdefault(stem(word), Counter())[word] += 1

    def name(term: str) -> str:
        forms = surface.get(term)
        return forms.most_common(1)[0][0] if forms else term

    remaining = [(question, _terms(question)) for question in questions]
    topics: list[Topic] = []
    while remaining and len(topics) < top:
        counts = Counter(term for _, terms in remaining for term in terms)
        if not counts:
            break
        term, count = min(counts.items(), key=lambda item: (-item[1], item[0]))
        if count < 2:
            break
        members = [(question, terms) for question, terms in remaining if term in terms]
        remaining = [(question, terms) for question, terms in remaining if term not in terms]
        runner_up = Counter(other for _, terms in members for other in terms if other != term)
        label = name(term)
        if runner_up:
            second, second_count = min(runner_up.items(), key=lambda item: (-item[1], item[0]))
            if second_count >= 2:
                label = f"{label} / {name(second)}"
        topics.append(Topic(label=label, count=len(members), examples=[q for q, _ in members[:examples]]))
    if remaining and len(topics) < top:
        topics.append(Topic(label=OTHER, count=len(remaining), examples=[q for q, _ in remaining[:examples]]))
    return topics
