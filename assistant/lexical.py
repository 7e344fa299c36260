"""Okapi BM25 as one sparse matrix, so a query scores every text in one product.

``rank_bm25`` (the lexical baseline) loops over documents in Python for every
query term; the ranker scores the whole corpus for every question, and the
trainer for every question of the bank at once, so the term weights are
precomputed here as one SciPy sparse matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from assistant.tokens import content_tokens

K1 = 1.5
"""BM25's term-frequency saturation, the usual default (Robertson and Zaragoza, 2009); not tuned here."""
B = 0.75
"""BM25's length normalisation, the usual default; not tuned here."""


class BM25Index:
    """BM25 weights of every term in every text; ``scores`` rates all texts against queries at once."""

    def __init__(self, texts: Sequence[str]) -> None:
        tokens = [content_tokens(t) for t in texts]
        self.vocabulary = {term: column for column, term in enumerate(sorted({t for terms in tokens for t in terms}))}
        """Each term's column, terms in sorted order."""
        rows = np.repeat(np.arange(len(texts)), [len(terms) for terms in tokens])
        columns = np.fromiter((self.vocabulary[t] for terms in tokens for t in terms), dtype=np.intp, count=len(rows))
        # Repeated (row, column) pairs are summed: term counts, as floats for the weights below.
        counts = sparse.csr_matrix(
            (np.ones(len(rows)), (rows, columns)), shape=(len(texts), len(self.vocabulary)), dtype=float
        )
        lengths = np.asarray(counts.sum(axis=1)).ravel()
        average = float(lengths.mean()) if len(lengths) else 1.0
        frequency = np.asarray((counts > 0).sum(axis=0)).ravel()
        self.idf = np.log1p((len(texts) - frequency + 0.5) / (frequency + 0.5))
        counts = counts.tocoo()
        norm = K1 * (1 - B + B * lengths[counts.row] / max(average, 1e-9))
        weights = counts.data * (K1 + 1) / (counts.data + norm) * self.idf[counts.col]
        self._weights = sparse.csr_matrix((weights, (counts.row, counts.col)), shape=counts.shape).T.tocsr()

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """BM25 score of every text for every query: shape (queries, texts).

        The product of each query's 0/1 row over the vocabulary with the weight matrix, done as the sum of the
        weight rows of the query's distinct known terms, in vocabulary order (the order, and so the sums, of
        the sparse product). A question has a handful of terms; this skips building a sparse matrix per query,
        which cost more than the sums (about 1 ms a question, ``docs/performance.md``).
        """
        vocabulary = self.vocabulary
        weights = self._weights
        out = np.zeros((len(queries), weights.shape[1]))
        for row, query in zip(out, queries, strict=True):
            for term in sorted({vocabulary[t] for t in content_tokens(query) if t in vocabulary}):
                start, end = weights.indptr[term], weights.indptr[term + 1]
                row[weights.indices[start:end]] += weights.data[start:end]
        return out

    def knows(self, token: str) -> bool:
        """Whether the texts use this (stemmed) token at all."""
        return token in self.vocabulary
