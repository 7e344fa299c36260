"""Retrieval: candidate sentences from dense and lexical search, ordered by the fitted ranker.

1. **Candidates.** The chunks nearest the question (and its conversation) by embedding and by BM25,
   every sentence of the article (it is short, and most questions are about it), and the sections
   the section decision or an explicit reference ("§ 107") points at.
2. **Ranking.** Every candidate sentence gets the ranker's probability of answering the question,
   from the features in :mod:`assistant.features`. Passages (chunks) rank by their best sentence.

How many chunks each search contributes is ``Settings.candidates``; the eval reports the share of
the bank's gold sentences the candidates hold. The two baselines (plain LangChain Chroma search and
Okapi BM25 over the same chunks) are here too, for the eval's comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore
from pydantic import PrivateAttr
from rank_bm25 import BM25Okapi

from assistant.chunking import embedding_text
from assistant.decisions.neighbours import Votes
from assistant.features import QueryView, Situation, pair_matrix
from assistant.sentences import SentenceTable
from assistant.tokens import content_tokens
from assistant.topk import top_k

SECTION_CANDIDATES = 3
"""The sections the section decision rates highest join the candidates whole: a question about "the
checklist" or "the disclaimer" is answered from that part even when its wording matches other parts."""


def _scored(document: Document, score: float) -> Document:
    return Document(id=document.id, page_content=document.page_content, metadata={**document.metadata, "score": score})


class DenseRetriever(BaseRetriever):
    """Plain LangChain similarity search on a vector store, the build's Chroma collection (the dense baseline).

    ``invoke(query)`` returns the ``k`` nearest chunks, best first, each with ``metadata['score']`` (cosine
    similarity); ``invoke(query, k=n)`` asks for another number.
    """

    store: VectorStore
    """Any LangChain vector store whose scores are cosine distances (Chroma's, as the index builds it)."""
    k: int = 6

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        hits = self.store.similarity_search_with_score(query, k=k or self.k)
        return [_scored(doc, 1.0 - distance) for doc, distance in hits]


class BM25Retriever(BaseRetriever):
    """Okapi BM25 over the same chunks (the lexical baseline); ``metadata['score']`` is the BM25 score."""

    chunks: list[Document]
    k: int = 6
    _bm25: BM25Okapi = PrivateAttr()

    def model_post_init(self, context: Any, /) -> None:
        """Index the chunks' words once."""
        self._bm25 = BM25Okapi([content_tokens(embedding_text(doc)) for doc in self.chunks])

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        scores = np.asarray(self._bm25.get_scores(content_tokens(query)), dtype=float)
        order = np.argsort(-scores, kind="stable")[: k or self.k]
        return [_scored(self.chunks[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class LexicalScores:
    """A question's BM25 scores against every sentence, chunk and heading, for its message and its context."""

    sentences: np.ndarray
    context_sentences: np.ndarray
    chunks: np.ndarray
    headings: np.ndarray

    @classmethod
    def of(cls, table: SentenceTable, views: Sequence[QueryView]) -> list[LexicalScores]:
        """Scores for many questions at once (one sparse product per index)."""
        texts = [v.text for v in views]
        contexts = [v.context for v in views]
        sentences = table.sentence_bm25.scores(texts)
        context_sentences = table.sentence_bm25.scores(contexts)
        chunks = table.chunk_bm25.scores(contexts)
        headings = table.heading_bm25.scores(texts)
        return [cls(sentences[i], context_sentences[i], chunks[i], headings[i]) for i in range(len(views))]


def candidate_rows(
    table: SentenceTable, view: QueryView, lexical: LexicalScores, section_probs: np.ndarray, depth: int
) -> np.ndarray:
    """The sentences worth ranking for a question, in table order."""
    dense = table.chunk_vectors @ view.vector
    if view.context != view.text:  # a follow-up: its context has a vector of its own
        dense = np.maximum(dense, table.chunk_vectors @ view.context_vector)
    chunks = set(top_k(dense, depth).tolist()) | set(top_k(lexical.chunks, depth).tolist())
    rows = set(table.article_rows.tolist())
    for chunk in chunks:
        rows.update(table.chunk_rows(int(chunk)).tolist())
    sections = set(np.argsort(-section_probs, kind="stable")[:SECTION_CANDIDATES].tolist())
    named = [
        i
        for i, s in enumerate(table.sections)
        if (s.kind == "statute" and any(s.heading.lower().startswith(f"§ {n}.") for n in view.statute_sections))
        or (s.kind == "treaty" and any(s.heading.startswith(f"Article {n}.") for n in view.treaty_articles))
    ]
    sections.update(named)
    rows.update(int(r) for r in np.flatnonzero(np.isin(table.section_of, list(sections))))
    rows -= set(view.excluded_rows)
    return np.array(sorted(rows), dtype=int)


@dataclass(frozen=True)
class Ranking:
    """Candidate sentences in the ranker's order, with its probabilities and their features."""

    rows: np.ndarray
    probabilities: np.ndarray
    features: np.ndarray

    def top(self, count: int) -> list[int]:
        """The ``count`` best rows."""
        return [int(r) for r in self.rows[:count]]


def rank(
    table: SentenceTable,
    view: QueryView,
    lexical: LexicalScores,
    section_probs: np.ndarray,
    situation: Situation,
    votes: Votes,
    depth: int,
    score: Callable[[np.ndarray], np.ndarray],
) -> Ranking:
    """Rank the candidates with ``score`` (the fitted ranker's ``probability``)."""
    rows = candidate_rows(table, view, lexical, section_probs, depth)
    features = pair_matrix(
        table,
        view,
        rows,
        section_probs,
        situation,
        lexical.sentences,
        lexical.context_sentences,
        lexical.headings,
        votes,
    )
    probabilities = score(features)
    order = np.argsort(-probabilities, kind="stable")
    return Ranking(rows[order], probabilities[order], features[order])


def passages(table: SentenceTable, ranking: Ranking, k: int) -> list[Document]:
    """The ``k`` best chunks, each scored by its best sentence's probability."""
    best: dict[int, float] = {}
    for row, probability in zip(ranking.rows, ranking.probabilities, strict=True):
        chunk = int(table.chunk_of[int(row)])
        if chunk not in best:
            best[chunk] = float(probability)
            if len(best) == k:
                break
    return [_scored(table.chunks[chunk], round(score, 4)) for chunk, score in best.items()]


def distinct_sections(documents: Sequence[Document], limit: int = 3) -> list[str]:
    """The first ``limit`` distinct section headings among ranked passages."""
    sections: list[str] = []
    for doc in documents:
        if doc.metadata["section"] not in sections:
            sections.append(doc.metadata["section"])
    return sections[:limit]
