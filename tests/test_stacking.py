from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from assistant.stacking import hstack_rows


def _same(got: sparse.csr_matrix, blocks: list[sparse.csr_matrix | np.ndarray]) -> None:
    expected = sparse.hstack([sparse.csr_matrix(b) if isinstance(b, np.ndarray) else b for b in blocks], format="csr")
    assert isinstance(got, sparse.csr_matrix)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    assert got.indices.dtype == expected.indices.dtype
    assert np.array_equal(got.indptr, expected.indptr)
    assert np.array_equal(got.indices, expected.indices)
    assert np.array_equal(got.data, expected.data)
    assert got.has_sorted_indices


@st.composite
def blocks(draw: st.DrawFn) -> list[sparse.csr_matrix | np.ndarray]:
    rows = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    out: list[sparse.csr_matrix | np.ndarray] = []
    for kind in draw(st.lists(st.sampled_from(["dense", "sparse", "empty", "integer"]), min_size=1, max_size=4)):
        width = int(rng.integers(1, 300))
        if kind == "dense":
            values = rng.normal(size=(rows, width))
            values[rng.random((rows, width)) < 0.3] = 0.0  # zeros a CSR conversion drops
            out.append(values)
        elif kind == "sparse":
            out.append(sparse.random(rows, width, density=0.05, format="csr", random_state=seed % 1000))
        elif kind == "empty":
            out.append(sparse.csr_matrix((rows, width)))
        else:
            out.append(sparse.csr_matrix(rng.integers(0, 3, size=(rows, width)).astype(np.int64)))
    return out


@settings(max_examples=200, deadline=None)
@given(blocks())
def test_the_matrix_is_scipys_hstack_array_for_array(parts: list[sparse.csr_matrix | np.ndarray]) -> None:
    _same(hstack_rows(parts), parts)


def test_real_feature_blocks_of_a_question_and_of_a_bank() -> None:
    texts = ["Is a remix a derivative work?", "Content ID claimed my bootleg", "zzz", "", "fair use of stems in the US"]
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(texts)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit(texts)
    rng = np.random.default_rng(0)
    for asked in (texts[:1], texts, texts * 200):
        dense = rng.normal(size=(len(asked), 16)).astype(np.float32)
        parts = [dense, words.transform(asked), chars.transform(asked)]
        _same(hstack_rows(parts), parts)


def test_explicit_zeros_stored_in_a_sparse_block_are_kept_as_scipy_keeps_them() -> None:
    block = sparse.csr_matrix((np.array([0.0, 2.0]), np.array([0, 3]), np.array([0, 2])), shape=(1, 5))
    parts = [np.array([[1.0, 0.0]]), block]
    got = hstack_rows(parts)
    _same(got, parts)
    assert got.nnz == 3


def test_blocks_of_different_heights_are_refused() -> None:
    with pytest.raises(ValueError, match="same number of rows"):
        hstack_rows([np.ones((2, 3)), sparse.csr_matrix((3, 4))])
    with pytest.raises(ValueError, match="at least one"):
        hstack_rows([])
