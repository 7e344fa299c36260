from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse

from assistant.lexical import BM25Index
from assistant.tokens import content_tokens

TEXTS = [
    "Content ID matches uploads against reference files.",
    "Fair use weighs four factors, including the purpose of the use.",
    "Stem separation isolates vocals. Stem separation isolates drums. Stem separation isolates bass.",
    "Vinyl pressing plants ship records.",
]


def test_a_text_with_the_query_terms_scores_highest() -> None:
    index = BM25Index(TEXTS)
    scores = index.scores(["fair use factors", "content id uploads"])
    assert scores.shape == (2, len(TEXTS))
    assert int(np.argmax(scores[0])) == 1 and int(np.argmax(scores[1])) == 0


def test_unknown_words_score_nothing_and_are_reported_unknown() -> None:
    index = BM25Index(TEXTS)
    assert not index.scores(["zzyzx"]).any()
    assert index.knows("vinyl") and not index.knows("zzyzx")


def test_rarer_terms_weigh_more() -> None:
    # "stem" is in three texts, "drums" in one: the text matching only the rare word ranks above the
    # equally long texts matching only the common one.
    index = BM25Index(["stem vocals", "stem bass", "stem keys", "drums loops"])
    scores = index.scores(["stem drums"])[0]
    assert scores[3] > scores[0] == scores[1] == scores[2] > 0


def test_scores_are_the_product_of_the_query_terms_with_the_weights() -> None:
    # Each query as a 0/1 row over the vocabulary times the weight matrix: the same figures, bit for bit.
    index = BM25Index(TEXTS)
    queries = ["stem separation stem", "fair use of content", "zzyzx", "", "vinyl records ship vinyl"]
    vocabulary = index.vocabulary
    ones = np.zeros((len(queries), len(vocabulary)))
    for i, query in enumerate(queries):
        for token in content_tokens(query):
            if token in vocabulary:
                ones[i, vocabulary[token]] = 1.0
    expected = np.asarray((sparse.csr_matrix(ones) @ index._weights).todense())
    assert np.array_equal(index.scores(queries), expected)
    assert index.scores(queries[:1]).any() and not index.scores(["zzyzx"]).any()


def test_weights_are_okapi_bm25_computed_term_by_term() -> None:
    # The textbook formula, one text and one term at a time: idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len/avg)).
    from assistant.lexical import K1, B

    index = BM25Index(TEXTS)
    tokens = [content_tokens(t) for t in TEXTS]
    average = sum(len(t) for t in tokens) / len(tokens)
    assert sorted(index.vocabulary) == list(index.vocabulary), "columns follow the terms' sorted order"
    for term, column in index.vocabulary.items():
        having = sum(term in t for t in tokens)
        idf = np.log1p((len(TEXTS) - having + 0.5) / (having + 0.5))
        for row, text in enumerate(tokens):
            tf = text.count(term)
            expected = idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(text) / average)) if tf else 0.0
            assert index._weights[column, row] == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_texts_without_any_term_give_an_empty_index_not_an_error() -> None:
    index = BM25Index(["the and of", ""])
    assert index.scores(["stems"]).shape == (1, 2) and not index.scores(["stems"]).any()
