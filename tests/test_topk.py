from __future__ import annotations

import numpy as np
import pytest

from assistant.topk import top_k


@pytest.mark.parametrize("seed", range(40))
def test_top_k_is_the_stable_descending_sort_cut_at_k(seed: int) -> None:
    # Few distinct values, so ties at the cut are common: they must be taken in index order, as the sort does.
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 6, size=int(rng.integers(1, 60))).astype(float) / 5 - 0.5
    for k in range(0, len(values) + 3):
        assert top_k(values, k).tolist() == np.argsort(-values, kind="stable")[:k].tolist()


def test_top_k_of_float32_similarities_matches_the_sort() -> None:
    rng = np.random.default_rng(7)
    values = rng.standard_normal(2700).astype(np.float32)
    values[100:110] = values[5]  # duplicated bank questions have equal similarities
    for k in (1, 5, 10, 25):
        assert top_k(values, k).tolist() == np.argsort(-values, kind="stable")[:k].tolist()
