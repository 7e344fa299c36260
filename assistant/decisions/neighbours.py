"""The bank's nearest questions to a new one, and what their labels say about it.

A question much like one in the bank is probably answered by the same sentences and sections, and
is probably covered if that one is. Each of the ``k`` nearest bank questions (by embedding cosine)
votes for its gold sentences and sections, weighted by its similarity; the votes, and how similar
the nearest question is, become features of the ranker and of the coverage decision, which learn
how far to trust them. In training, a question's neighbours come from the other folds only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assistant.topk import top_k

NEIGHBOURS = 10
"""How many bank questions vote. Chosen by grouped cross-validation on the bank over 5, 10 and 20 (the
ranker's gold hit@1 0.779 / 0.782 / 0.775): ten is as good as any and steadier than five."""


@dataclass(frozen=True)
class Votes:
    """What a question's neighbours say.

    Per table row and section from the nearest covered questions, and of coverage from the nearest of all.
    """

    rows: np.ndarray
    sections: np.ndarray
    nearest_covered: float
    """Cosine similarity of the nearest covered bank question."""
    covered: float
    """Similarity-weighted share of the nearest questions that the corpus covers."""
    nearest: float
    """Cosine similarity of the nearest bank question."""


@dataclass
class Neighbours:
    """Bank questions as unit vectors with their labels, for voting."""

    vectors: np.ndarray
    gold_rows: list[np.ndarray]
    section_weights: np.ndarray
    """(bank items, table sections): each item's sections, sharing a weight of one."""
    covered: np.ndarray
    table_rows: int

    @classmethod
    def of(
        cls,
        vectors: np.ndarray,
        gold_rows: Sequence[set[int]],
        sections: Sequence[Sequence[int]],
        covered: np.ndarray,
        table_rows: int,
        table_sections: int,
    ) -> Neighbours:
        """Neighbours over the given bank items (``sections``: table section indices per item)."""
        weights = np.zeros((len(vectors), table_sections), dtype=np.float32)
        for i, item_sections in enumerate(sections):
            for section in item_sections:
                weights[i, section] += 1.0 / len(item_sections)
        return cls(
            np.asarray(vectors, dtype=np.float32),
            [np.array(sorted(rows), dtype=int) for rows in gold_rows],
            weights,
            np.asarray(covered, dtype=bool),
            table_rows,
        )

    def votes(self, vector: np.ndarray, allowed: np.ndarray | None = None, k: int = NEIGHBOURS) -> Votes:
        """The votes of the ``k`` nearest bank questions (among ``allowed`` ones, when given)."""
        similarities = self.vectors @ vector
        usable = np.ones(len(similarities), dtype=bool) if allowed is None else np.asarray(allowed, dtype=bool)
        rows = np.zeros(self.table_rows)
        sections = np.zeros(self.section_weights.shape[1])
        nearest_covered = covered_share = nearest = 0.0
        candidates = np.flatnonzero(usable & self.covered)
        if len(candidates):
            top = candidates[top_k(similarities[candidates], k)]
            weights = np.maximum(similarities[top], 0.0)
            total = float(weights.sum()) or 1.0
            for item, weight in zip(top, weights, strict=True):
                rows[self.gold_rows[item]] += weight
            rows /= total
            sections = (weights @ self.section_weights[top]) / total
            nearest_covered = float(similarities[top[0]])
        candidates = np.flatnonzero(usable)
        if len(candidates):
            top = candidates[top_k(similarities[candidates], k)]
            weights = np.maximum(similarities[top], 0.0)
            covered_share = float(weights[self.covered[top]].sum() / (weights.sum() or 1.0))
            nearest = float(similarities[top[0]])
        return Votes(rows, sections, nearest_covered, covered_share, nearest)
