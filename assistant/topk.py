"""The indices of the ``k`` largest values, in the order of a stable descending sort, without sorting them all.

A question picks its nearest bank questions (of about 2,700) and its best chunks (of about 860) this way several
times a turn; sorting only the few at or above the ``k``-th largest value gives the same indices, ties included.
"""

from __future__ import annotations

import numpy as np


def top_k(values: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(-values, kind="stable")[:k]`` for finite ``values``: larger first, ties in index order.

    Every value above the ``k``-th largest is among the first ``k``, and the ties at it are taken in index order,
    so the stable sort of the values at or above it, cut at ``k``, is the same as cutting the full sort.
    """
    values = np.asarray(values)
    count = len(values)
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if k >= count:
        return np.argsort(-values, kind="stable")
    threshold = np.partition(values, count - k)[count - k]
    candidates = np.flatnonzero(values >= threshold)
    return candidates[np.argsort(-values[candidates], kind="stable")[:k]]
