"""Retrieval: dense and lexical search over the same chunks, fused, with priors and a sentence-level rerank.

Plain dense search over this corpus drowns the 11 KB article in 400 KB of
statute, and BM25 alone misses paraphrases. The hybrid retriever:

1. prepares the query (translation, typo repair, which sources it names: see ``query``);
2. takes candidates from Chroma (dense) and from BM25 over the same chunks;
3. fuses normalised scores, adds a prior for the article unless the question is
   about the law itself, and boosts sections the question names ("§ 107");
4. reranks by the best-matching single sentence of each candidate, which tells
   a passage that answers from one that merely shares the topic.

Every retriever returns LangChain ``Document``s whose metadata carries ``score``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from rank_bm25 import BM25Okapi

from assistant.chunking import embedding_text
from assistant.corpus import SOURCES_HEADING
from assistant.query import PreparedQuery, QueryPreparer, content_tokens, words
from assistant.sentences import SentenceBank


class Retriever(Protocol):
    """Anything that ranks chunks for a query."""

    def retrieve(self, query: str, k: int) -> list[Document]:
        """The ``k`` best chunks, best first, each with ``metadata['score']``."""
        ...


def _scored(document: Document, score: float) -> Document:
    return Document(id=document.id, page_content=document.page_content, metadata={**document.metadata, "score": score})


class DenseRetriever:
    """Plain LangChain similarity search on the Chroma store (the dense baseline)."""

    def __init__(self, store: Chroma) -> None:
        self._store = store

    def retrieve(self, query: str, k: int) -> list[Document]:
        """Cosine similarity of the query to each chunk, best first."""
        hits = self._store.similarity_search_with_score(query, k=k)
        return [_scored(doc, 1.0 - distance) for doc, distance in hits]


class BM25Retriever:
    """Okapi BM25 over the same chunks (the lexical baseline and half of the hybrid)."""

    def __init__(self, chunks: Sequence[Document]) -> None:
        self.chunks = list(chunks)
        self._bm25 = BM25Okapi([content_tokens(embedding_text(doc)) for doc in self.chunks])

    @property
    def idf(self) -> dict[str, float]:
        """Inverse document frequency of every term over the chunks."""
        return dict(self._bm25.idf)

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk, in chunk order."""
        return np.asarray(self._bm25.get_scores(content_tokens(query)), dtype=float)

    def retrieve(self, query: str, k: int) -> list[Document]:
        """The ``k`` chunks with the highest BM25 score."""
        scores = self.scores(query)
        order = np.argsort(-scores)[:k]
        return [_scored(self.chunks[i], float(scores[i])) for i in order]


@dataclass(frozen=True)
class HybridWeights:
    """How the signals combine; tuned on the known-question set, kept as one readable record."""

    dense: float = 0.55
    lexical: float = 0.25
    sentence: float = 0.45
    article_prior: float = 0.12
    named_section: float = 0.35
    named_source: float = 0.12
    situation: float = 0.25


class HybridRetriever:
    """Dense + BM25 fusion with source priors and a best-sentence rerank."""

    def __init__(
        self,
        store: Chroma,
        chunks: Sequence[Document],
        embeddings: Embeddings,
        preparer: QueryPreparer,
        sentences: SentenceBank,
        candidates: int = 40,
        weights: HybridWeights | None = None,
        rerank_depth: int = 20,
    ) -> None:
        self._store = store
        self._lexical = BM25Retriever(chunks)
        self.idf = self._lexical.idf
        self._chunks = self._lexical.chunks
        self._position = {str(doc.id): i for i, doc in enumerate(self._chunks)}
        self._embeddings = embeddings
        self._preparer = preparer
        self._sentences = sentences
        self._candidates = candidates
        self._weights = weights or HybridWeights()
        self._rerank_depth = rerank_depth

    def retrieve(self, query: str, k: int) -> list[Document]:
        """The ``k`` best chunks for a raw question."""
        return self.retrieve_prepared(self._preparer.prepare(query), k)

    def _prior(self, doc: Document, query: PreparedQuery) -> float:
        meta, w = doc.metadata, self._weights
        kind = meta["source_kind"]
        prior = 0.0
        if kind == "article" and not query.wants_law:
            prior += w.article_prior
        if (kind == "statute" and query.wants_statute) or (kind == "treaty" and query.wants_treaty):
            prior += w.named_source
        section = str(meta["section"])
        if section in query.preferred_sections:
            # The Sources a question asks about weigh as a section it names ("§ 107"); a situation's less.
            prior += w.named_section if query.wants_sources and section == SOURCES_HEADING else w.situation
        if kind == "statute" and any(section.lower().startswith(f"§ {n}.") for n in query.statute_sections):
            prior += w.named_section
        if kind == "statute" and query.wants_definition and section.startswith("§ 101."):
            prior += w.named_source
        if kind == "treaty" and any(section.startswith(f"Article {n}.") for n in query.treaty_articles):
            prior += w.named_section
        return prior

    def retrieve_prepared(self, query: PreparedQuery, k: int, vector: np.ndarray | None = None) -> list[Document]:
        """The ``k`` best chunks for a prepared query (``vector``: its embedding, if already computed)."""
        if vector is None:
            vector = np.asarray(self._embeddings.embed_query(query.text), dtype=float)
        dense_hits = self._store.similarity_search_by_vector_with_relevance_scores(vector.tolist(), k=self._candidates)
        dense = {str(doc.id): 1.0 - distance for doc, distance in dense_hits}
        lexical = self._lexical.scores(query.text)
        top_lexical = np.argsort(-lexical)[: self._candidates]
        ceiling = float(lexical[top_lexical[0]]) if len(top_lexical) and lexical[top_lexical[0]] > 0 else 1.0
        pool = dict.fromkeys([*dense, *(str(self._chunks[i].id) for i in top_lexical)])
        # Named sections join the pool even when neither search ranked them.
        for doc in self._chunks:
            if self._prior(doc, query) >= self._weights.named_section:
                pool.setdefault(str(doc.id))
        floor = min(dense.values()) if dense else 0.0
        w = self._weights
        first_pass: list[tuple[float, Document]] = []
        for chunk_id in pool:
            doc = self._chunks[self._position[chunk_id]]
            score = (
                w.dense * dense.get(chunk_id, floor)
                + w.lexical * float(lexical[self._position[chunk_id]]) / ceiling
                + self._prior(doc, query)
            )
            first_pass.append((score, doc))
        first_pass.sort(key=lambda pair: -pair[0])
        # Only the leading candidates are reranked, which keeps the cost per question flat.
        shortlist = first_pass[: max(k, self._rerank_depth)]
        reranked = [
            (score + w.sentence * self._sentences.best_similarity(str(doc.id), vector), doc) for score, doc in shortlist
        ]
        reranked.sort(key=lambda pair: -pair[0])
        return [_scored(doc, round(score, 4)) for score, doc in reranked[:k]]


def vocabulary(chunks: Sequence[Document]) -> Counter[str]:
    """How often each word occurs in the corpus chunks and headings (for typo repair)."""
    found: Counter[str] = Counter()
    for doc in chunks:
        found.update(w for w in words(embedding_text(doc)) if w.isalpha())
    return found
