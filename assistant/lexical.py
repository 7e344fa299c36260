"""Okapi BM25 as one sparse matrix, so a query scores every text in one product.

``rank_bm25`` (the lexical baseline) loops over documents in Python for every
query term; the ranker scores the whole corpus for every question, and the
trainer for every question of the bank at once, so the term weights are
precomputed here with scikit-learn's vectoriser and scipy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer

from assistant.tokens import content_tokens

K1 = 1.5
"""BM25's term-frequency saturation, the usual default (Robertson and Zaragoza, 2009); not tuned here."""
B = 0.75
"""BM25's length normalisation, the usual default; not tuned here."""


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class BM25Index:
    """BM25 weights of every term in every text; ``scores`` rates all texts against queries at once."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._vectorizer = CountVectorizer(analyzer=_identity)
        counts = sparse.csr_matrix(self._vectorizer.fit_transform([content_tokens(t) for t in texts]), dtype=float)
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        average = float(lengths.mean()) if len(lengths) else 1.0
        frequency = np.asarray((counts > 0).sum(axis=0)).ravel()
        self.idf = np.log1p((len(texts) - frequency + 0.5) / (frequency + 0.5))
        counts = counts.tocoo()
        norm = K1 * (1 - B + B * lengths[counts.row] / max(average, 1e-9))
        weights = counts.data * (K1 + 1) / (counts.data + norm) * self.idf[counts.col]
        self._weights = sparse.csr_matrix((weights, (counts.row, counts.col)), shape=counts.shape).T.tocsr()

    def query_matrix(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """Each query as a 0/1 row over the vocabulary (terms unknown to the texts are dropped)."""
        rows = self._vectorizer.transform([content_tokens(q) for q in queries])
        return sparse.csr_matrix((rows > 0).astype(float))

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of every text for every query: shape (queries, texts)."""
        return np.asarray((self.query_matrix(queries) @ self._weights).todense())

    def knows(self, token: str) -> bool:
        """Whether the texts use this (stemmed) token at all."""
        return token in self._vectorizer.vocabulary_
