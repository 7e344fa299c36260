"""TF-IDF rows of a fitted ``TfidfVectorizer`` for the few texts of one question, without its per-call checks.

scikit-learn's own counting (``CountVectorizer.transform``) and its own row normalisation
(``inplace_csr_row_normalize_l2``), with the few steps of ``TfidfTransformer.transform`` between them, but not its
input validation: that validation (a sparse matrix this function has just built, every time) cost more than the
arithmetic for a question's one to four texts. ``tests/test_tfidf.py`` checks the rows are those of
``vectorizer.transform``, bit for bit, for every option the assistant's vectorizers use.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.utils.sparsefuncs_fast import inplace_csr_row_normalize_l2


def tfidf_rows(vectorizer: TfidfVectorizer, texts: Sequence[str]) -> sparse.csr_matrix:
    """``vectorizer.transform(texts)``: the same rows, for a fitted vectorizer with l2 norm (or none)."""
    if vectorizer.norm not in ("l2", None):
        return sparse.csr_matrix(vectorizer.transform(list(texts)))
    counts = CountVectorizer.transform(vectorizer, list(texts))
    rows = sparse.csr_matrix(counts, dtype=np.float64)
    if vectorizer.sublinear_tf:
        np.log(rows.data, rows.data)
        rows.data += 1.0
    if vectorizer.use_idf:
        rows.data *= vectorizer.idf_[rows.indices]
    if vectorizer.norm == "l2":
        inplace_csr_row_normalize_l2(rows)
    return rows
