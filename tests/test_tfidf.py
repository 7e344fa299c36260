from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from assistant.tfidf import tfidf_rows

BANK = [
    "Can I release a remix made with AI stems on Spotify?",
    "I got a Content ID claim on my bootleg, what now?",
    "Is stem separation fair use in the US?",
    "Does the EU text and data mining exception cover stem extraction?",
    "My label wants a licence for the acapella I pulled.",
    "Is a remix a derivative work?",
    "what about the UK quotation exception for DJ sets",
]
ASKED = ["is a remix fair use?", "zzz qqq", "", "Content ID claim on my remix, with AI stems", "remix remix remix"]


@pytest.mark.parametrize(
    "options",
    [
        {"ngram_range": (1, 2), "min_df": 1, "sublinear_tf": True},
        {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 2, "sublinear_tf": True},
        {"analyzer": "char_wb", "ngram_range": (3, 5), "min_df": 1, "sublinear_tf": False},
        {"min_df": 1, "use_idf": False},
        {"min_df": 1, "norm": None},
        {"min_df": 1, "norm": "l1"},
    ],
)
def test_rows_are_those_of_the_vectorizers_transform(options: dict[str, object]) -> None:
    vectorizer = TfidfVectorizer(**options).fit(BANK)  # type: ignore[arg-type]
    expected = sparse.csr_matrix(vectorizer.transform(ASKED))
    got = tfidf_rows(vectorizer, ASKED)
    assert got.shape == expected.shape
    assert (got != expected).nnz == 0
    assert np.array_equal(got.toarray(), expected.toarray())
    assert got.nnz > 0
