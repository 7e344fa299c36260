"""Answer composers: from ranked passages to a short answer whose every sentence is cited.

Composers sit behind :class:`AnswerComposer`, so a generative backend can be
added without touching retrieval or guardrails. The default is
:class:`assistant.extractive.ExtractiveComposer`, which quotes the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from langchain_core.documents import Document

from assistant.query import PreparedQuery
from assistant.schemas import Citation


@dataclass(frozen=True)
class CompositionRequest:
    """Everything a composer may use to answer one question."""

    query: PreparedQuery
    query_vector: np.ndarray
    passages: Sequence[Document]
    situation_vectors: np.ndarray | None = None
    """Embeddings of the 'When to Ask a Lawyer' bullets that match the user's situation, if any."""


@dataclass(frozen=True)
class Composition:
    """A composed answer before the guardrails."""

    answer: str
    answered: bool
    citations: list[Citation]
    closest_sections: list[str] = field(default_factory=list)


class AnswerComposer(Protocol):
    """Turns retrieved passages into an answer with citations."""

    def compose(self, request: CompositionRequest) -> Composition:
        """Answer from the passages, or say plainly that they do not cover the question."""
        ...


def distinct_sections(passages: Sequence[Document], limit: int = 3) -> list[str]:
    """The first ``limit`` distinct section headings among ranked passages."""
    sections: list[str] = []
    for doc in passages:
        if doc.metadata["section"] not in sections:
            sections.append(doc.metadata["section"])
    return sections[:limit]


def not_covered(passages: Sequence[Document], reason: str = "") -> Composition:
    """The honest reply when the corpus does not answer the question."""
    closest = distinct_sections(passages)
    names = ", ".join(f"“{name}”" for name in closest)
    text = " ".join(
        part
        for part in (
            "The article and the sources it cites do not cover this question, so I can't answer it from them.",
            reason,
            f"The closest sections are {names}." if closest else "",
        )
        if part
    )
    return Composition(answer=text, answered=False, citations=[], closest_sections=closest)
