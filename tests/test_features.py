"""The text vectorizer's row cache gives the rows a direct transform gives, and is never pickled."""

from __future__ import annotations

import pickle

import numpy as np

from assistant import features
from assistant.features import TextVectorizer

BANK = [
    "Can I release a remix made with AI stems?",
    "Spotify terms forbid extracting stems",
    "I got a takedown notice for my bootleg",
    "Is fair use a defence for a parody?",
    "Do I need a licence to sample a vocal?",
]


def test_cached_rows_equal_a_direct_transform_in_any_order() -> None:
    vectorizer = TextVectorizer().fit(BANK * 2)
    texts = [BANK[2], "my own new question about stems", BANK[2], BANK[0]]
    direct = vectorizer._transform(texts).toarray()
    first = vectorizer.transform(texts).toarray()  # fills the cache
    again = vectorizer.transform(list(reversed(texts))).toarray()  # all from the cache
    assert np.array_equal(first, direct)
    assert np.array_equal(again, direct[::-1])
    assert len(vectorizer._row_cache()[0]) == 3


def test_large_batches_bypass_the_cache_and_the_cache_is_bounded() -> None:
    vectorizer = TextVectorizer().fit(BANK * 2)
    many = [f"question number {i} about stems" for i in range(features.ROW_CACHE_BATCH + 1)]
    assert np.array_equal(vectorizer.transform(many).toarray(), vectorizer._transform(many).toarray())
    assert len(vectorizer._row_cache()[0]) == 0
    for i in range(features.ROW_CACHE_TEXTS + 5):
        vectorizer.transform([f"text {i}"])
    assert len(vectorizer._row_cache()[0]) == features.ROW_CACHE_TEXTS


def test_a_pickled_vectorizer_carries_no_cache_and_transforms_the_same() -> None:
    vectorizer = TextVectorizer().fit(BANK * 2)
    vectorizer.transform(BANK[:2])
    restored = pickle.loads(pickle.dumps(vectorizer))
    assert "_rows" not in restored.__dict__
    assert np.array_equal(restored.transform(BANK).toarray(), vectorizer._transform(BANK).toarray())
