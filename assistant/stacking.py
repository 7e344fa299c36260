"""Feature blocks side by side in one CSR matrix: ``scipy.sparse.hstack(blocks, format="csr")``, built directly.

Every question's features are a few blocks (its embedding-derived columns, dense; its n-grams, sparse) of one
to four rows, put side by side four or five times a turn. SciPy's ``hstack`` converts and checks each block
and the result on every call: about 0.2 ms for these few rows, more than the copying itself. Here the CSR
arrays are laid out with NumPy in one pass, and the result is the matrix ``hstack`` gives, array for array
(same values, column indices, row pointers, dtypes and shape; ``tests/test_stacking.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse


def _parts(block: sparse.spmatrix | sparse.sparray | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Entries per row, column indices and values of one block, as CSR stores them (zeros of a dense block dropped)."""
    if isinstance(block, np.ndarray):
        dense = np.atleast_2d(block)
        nonzero = dense != 0
        return nonzero.sum(axis=1), np.nonzero(nonzero)[1], dense[nonzero]
    rows = block if block.format == "csr" else sparse.csr_matrix(block)
    return np.diff(rows.indptr), rows.indices, rows.data


def hstack_rows(blocks: Sequence[sparse.spmatrix | sparse.sparray | np.ndarray]) -> sparse.csr_matrix:
    """The blocks (same number of rows; sparse or dense) side by side, as one CSR matrix."""
    if not blocks:
        raise ValueError("hstack_rows needs at least one block")
    shapes = [np.atleast_2d(b).shape if isinstance(b, np.ndarray) else b.shape for b in blocks]
    height = shapes[0][0]
    if any(shape[0] != height for shape in shapes):
        raise ValueError(f"blocks must have the same number of rows, not {[s[0] for s in shapes]}")
    width = sum(shape[1] for shape in shapes)
    parts = [_parts(block) for block in blocks]
    lengths = np.zeros(height, dtype=np.int64)
    for counts, _, _ in parts:
        lengths += counts
    indptr = np.zeros(height + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    total = int(indptr[-1])
    # SciPy's choice of index type for the result: 32 bits when the width and the entries fit.
    index_dtype = np.int32 if max(width, total) <= np.iinfo(np.int32).max else np.int64
    data = np.empty(total, dtype=np.result_type(*(values.dtype for _, _, values in parts)))
    indices = np.empty(total, dtype=index_dtype)
    start = indptr[:-1].copy()  # where the next block's entries of each row go
    offset = 0
    for (counts, columns, values), shape in zip(parts, shapes, strict=True):
        if len(values):
            first = np.zeros(height, dtype=np.int64)
            np.cumsum(counts[:-1], out=first[1:])
            target = np.repeat(start - first, counts) + np.arange(len(values))
            data[target] = values
            indices[target] = columns + offset
        start += counts
        offset += shape[1]
    return sparse.csr_matrix((data, indices, indptr.astype(index_dtype)), shape=(height, width))
