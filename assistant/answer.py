"""Answer composers: from ranked sentences to a short answer whose every sentence is cited.

Composers sit behind :class:`AnswerComposer`, so a generative backend can be
added without touching retrieval or guardrails. The default is
:class:`assistant.extractive.ExtractiveComposer`, which quotes the corpus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from langchain_core.documents import Document

from assistant.decisions.judge import Judgement
from assistant.features import QueryView
from assistant.schemas import Citation
from assistant.sentences import SentenceTable


@dataclass(frozen=True)
class CompositionRequest:
    """Everything a composer may use to answer one question."""

    view: QueryView
    judgement: Judgement
    situation_rows: tuple[int, ...] = ()
    """The 'When to Ask a Lawyer' bullets of the situations this reply is about (table rows): shown as notices,
    so a composer leaves them out of the answer."""
    context: tuple[Document, ...] = ()
    """The best passages (chunks), best first, for a composer that writes from passages rather than sentences."""


@dataclass(frozen=True)
class Composition:
    """A composed answer before the guardrails."""

    answer: str
    answered: bool
    citations: list[Citation]
    closest_sections: list[str] = field(default_factory=list)
    composer: str = "extractive"
    """Which composer wrote the text (see :attr:`assistant.schemas.Answer.composer`)."""
    sentences_dropped: int = 0
    """A model's sentences that failed verification and are not shown."""
    sentences_generated: int = 0
    """Sentences a model wrote (0 when no model was asked or its reply could not be read)."""
    notices: tuple[str, ...] = ()
    """Notes for the reader from the composer, e.g. that it fell back to quoting the sources."""


class AnswerComposer(Protocol):
    """Turns ranked sentences into an answer with citations."""

    def compose(self, request: CompositionRequest) -> Composition:
        """Answer from the ranked sentences, or say plainly that they do not cover the question."""
        ...


def closest_sections(table: SentenceTable, judgement: Judgement, limit: int = 3) -> list[str]:
    """The first ``limit`` distinct sections among the ranked sentences."""
    sections: list[str] = []
    for row in judgement.ranking.rows:
        section = table.sentences[int(row)].section
        if section not in sections:
            sections.append(section)
            if len(sections) == limit:
                break
    return sections


def not_covered(closest: list[str], reason: str = "") -> Composition:
    """The honest reply when the corpus does not answer the question."""
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
