"""The fitted heads: linear models and trees on frozen embeddings and n-grams, each with a threshold fitted by CV.

Every threshold here is chosen on out-of-fold predictions over the question bank (folds never split an
author), by an objective stated beside it; no threshold is typed in. The hyperparameters are
scikit-learn's usual ones, named in :class:`assistant.settings.DecisionSettings` with the cross-validation
figures that chose them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from scipy import sparse

from assistant.decisions.neighbours import Neighbours
from assistant.frozen import Logistic, freeze, softmax
from assistant.requests_filter import RequestFilter

if TYPE_CHECKING:  # fitting only: a served set holds frozen models (assistant.frozen)
    from sklearn.linear_model import LogisticRegression

Matrix: TypeAlias = np.ndarray | sparse.csr_matrix
SEED = 0
"""One seed for every model and fold split: training twice gives the same decisions."""
TRAINER_VERSION = "11"
"""Bumped whenever training changes what it fits or how a fitted set is stored: a build's decisions are refitted
when it differs. (11: every model stored frozen, without scikit-learn.)"""


def f1(y: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of a binary prediction (0 when nothing is predicted or expected)."""
    tp = float(np.sum(y & predicted))
    denominator = float(np.sum(y) + np.sum(predicted))
    return 2 * tp / denominator if denominator else 0.0


Objective = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""Scores every cut at once from its counts (tp, fp, fn, tn as arrays)."""


def f1_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """F1 at every cut."""
    denominator = 2 * tp + fp + fn
    return np.asarray(
        np.divide(2 * tp, denominator, out=np.zeros_like(denominator, dtype=float), where=denominator > 0)
    )


def balanced_accuracy_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """Balanced accuracy at every cut."""
    positives, negatives = tp + fn, tn + fp
    recall = np.divide(tp, positives, out=np.zeros_like(tp, dtype=float), where=positives > 0)
    specificity = np.divide(tn, negatives, out=np.zeros_like(tn, dtype=float), where=negatives > 0)
    classes = (positives > 0).astype(float) + (negatives > 0).astype(float)
    return np.asarray((recall + specificity) / np.maximum(classes, 1.0))


ANSWER_WEIGHT = 0.10 / 0.05
"""Declining an answerable question may happen in 5 % of cases, answering an unanswerable one in 10 %."""


def answer_weighted_accuracy(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, tn: np.ndarray) -> np.ndarray:
    """Balanced accuracy with the covered class ("yes") weighted by the ratio of the agreed error budgets.

    The product's floors allow 5 % of answerable questions to go unanswered and 10 % of out-of-scope ones to be
    answered: a missed answer costs twice a wrong one, so its recall counts twice.
    """
    positives, negatives = tp + fn, tn + fp
    recall = np.divide(tp, positives, out=np.zeros_like(tp, dtype=float), where=positives > 0)
    specificity = np.divide(tn, negatives, out=np.zeros_like(tn, dtype=float), where=negatives > 0)
    return np.asarray((ANSWER_WEIGHT * recall + specificity) / (ANSWER_WEIGHT + 1))


OBJECTIVES: dict[str, Objective] = {
    "f1": f1_counts,
    "balanced_accuracy": balanced_accuracy_counts,
    "answer_weighted_accuracy": answer_weighted_accuracy,
}


def fit_threshold(y: np.ndarray, scores: np.ndarray, objective: str) -> float:
    """The cut on ``scores`` that maximises ``objective`` on these (out-of-fold) predictions.

    Candidates are the midpoints between consecutive distinct scores; among equally good cuts the
    middle one is taken, so the cut sits as far from the examples on either side as the data allow.
    Every cut is scored at once from cumulative counts (the ranker's cut is fitted over half a million
    candidate sentences).
    """
    y = np.asarray(y, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    values, inverse = np.unique(scores, return_inverse=True)
    if len(values) < 2:
        return float(values[0]) if len(values) else 0.5
    positives = np.bincount(inverse, weights=y, minlength=len(values))
    totals = np.bincount(inverse, minlength=len(values)).astype(float)
    # A cut between values[i] and values[i+1] predicts yes for values[i+1:].
    tp = positives[::-1].cumsum()[::-1][1:]
    predicted = totals[::-1].cumsum()[::-1][1:]
    fp = predicted - tp
    fn = positives.sum() - tp
    tn = (totals.sum() - positives.sum()) - fp
    results = OBJECTIVES[objective](tp, fp, fn, tn)
    cuts = (values[:-1] + values[1:]) / 2
    best = np.flatnonzero(results >= results.max() - 1e-12)
    return float(cuts[best[len(best) // 2]])


TOLERANCE = 1e-3
"""lbfgs stops when the loss improves less than this: ten times scikit-learn's default, because the section
head's grouped-CV accuracy is the same at both (top-3 0.969) and it fits in half the time."""


def logistic(c: float, balanced: bool = False) -> LogisticRegression:
    """The linear head every question-level decision uses."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(
        C=c,
        max_iter=2000,
        tol=TOLERANCE,
        class_weight="balanced" if balanced else None,
        random_state=SEED,
        solver="lbfgs",
    )


def positive(model: Logistic | LogisticRegression, features: Matrix) -> np.ndarray:
    """P(the positive class) of a fitted binary logistic regression: ``predict_proba(features)[:, 1]``.

    The same arithmetic as scikit-learn's (the logistic of ``features @ coef.T + intercept``), without its
    per-call checks and dispatch, which cost more than the product itself for the one question a turn asks
    about; ``tests/decisions/test_models.py`` checks both give the same numbers.
    """
    if not isinstance(model, Logistic):  # a model being fitted: its arrays, not copies
        model = Logistic(model.coef_, model.intercept_, model.classes_)
    return model.positive(features)


def class_probabilities(model: Logistic | LogisticRegression, features: Matrix) -> np.ndarray:
    """``predict_proba(features)`` of a fitted multinomial logistic regression (three classes or more).

    scikit-learn's arithmetic (the softmax of ``features @ coef.T + intercept``, with the same softmax) without
    its per-call checks, as :func:`positive` does for two classes; ``tests/decisions/test_models.py`` checks
    both give the same numbers.
    """
    if len(model.classes_) <= 2:
        return np.asarray(model.predict_proba(features))
    scores = np.asarray(features @ model.coef_.T, dtype=np.float64) + model.intercept_
    return softmax(scores)


@dataclass
class BinaryDecision:
    """A yes/no decision: a fitted classifier and the cut on its probability."""

    model: Logistic
    threshold: float

    def __post_init__(self) -> None:
        self.model = freeze(self.model)

    def probability(self, features: Matrix) -> np.ndarray:
        """P(yes) per row."""
        return positive(self.model, features)

    def decide(self, features: Matrix) -> np.ndarray:
        """Yes/no per row."""
        return self.probability(features) >= self.threshold


@dataclass
class SituationDecision:
    """Which lawyer situations are the user's own: P(own live situation) x P(this situation | own).

    Whether a message tells of the user's own, current matter (not a friend's, not a hypothetical, not a
    settled one) is the same question for all five situations, so one head learns it from every labelled
    situation at once; five heads, fitted on the messages that do tell of one, learn which it is. A
    message may be in several situations, so the five are independent (one-vs-rest), not a softmax.
    """

    labels: tuple[str, ...]
    own: Logistic
    topics: dict[str, Logistic]
    thresholds: dict[str, float]
    topic_columns: int
    """The topic heads read the n-grams only (the first columns); the cue counts inform the 'own' head."""

    def __post_init__(self) -> None:
        self.own = freeze(self.own)
        self.topics = {label: freeze(model) for label, model in self.topics.items()}

    def probabilities(
        self, features: Matrix, parts: Matrix | None = None, part_of: Sequence[int] = ()
    ) -> dict[str, np.ndarray]:
        """P(label) per row, for every label.

        ``parts`` are the features of each row's sentences (``part_of`` names the row of each): a message tells
        of the user's own matter when any of its sentences does ("I want to release it next month. Is that
        risky?"), so a row's 'own' probability is the highest of its own and its sentences'.
        """
        own = positive(self.own, features)
        if parts is not None and len(part_of):
            for row, probability in zip(part_of, positive(self.own, parts), strict=True):
                own[row] = max(own[row], probability)
        words = features[:, : self.topic_columns]
        return {label: own * positive(self.topics[label], words) for label in self.labels}

    def decide(self, features: Matrix, parts: Matrix | None = None, part_of: Sequence[int] = ()) -> list[set[str]]:
        """The labels that apply, per row."""
        probabilities = self.probabilities(features, parts, part_of)
        return [
            {label for label in self.labels if probabilities[label][i] >= self.thresholds[label]}
            for i in range(features.shape[0])
        ]


@dataclass
class SectionDecision:
    """Which section answers a question: a distribution over classes, spread onto the table's sections.

    Sections with too few bank questions share a class per source kind ("another section of the
    statute"), whose probability is split evenly among them.
    """

    model: Logistic
    classes: tuple[str, ...]
    spread: np.ndarray
    """(classes, table sections): how each class's probability is shared among the table's sections."""

    def __post_init__(self) -> None:
        self.model = freeze(self.model)

    def probabilities(self, features: Matrix) -> np.ndarray:
        """P(section) per row, over the table's sections."""
        by_class = class_probabilities(self.model, features)
        ordered = np.zeros((by_class.shape[0], len(self.classes)))
        for column, name in enumerate(self.model.classes_):
            ordered[:, self.classes.index(str(name))] = by_class[:, column]
        return np.asarray(ordered @ self.spread)


@dataclass
class RankerDecision:
    """P(a candidate sentence is one that answers the question), and the cut for a supporting point."""

    model: Any
    """A frozen classifier (:mod:`assistant.frozen`): gradient-boosted trees, or a scaled logistic regression."""
    support_threshold: float

    def __post_init__(self) -> None:
        self.model = freeze(self.model)

    def probability(self, features: np.ndarray) -> np.ndarray:
        """P(answers) per candidate."""
        return np.asarray(self.model.positive(features))


@dataclass
class Decisions:
    """Everything the assistant decides by a fitted model, with how it was fitted."""

    vectorizer: object
    situation: SituationDecision
    sections: SectionDecision
    ranker: RankerDecision
    coverage: BinaryDecision
    wants_list: BinaryDecision
    neighbours: Neighbours
    requests: RequestFilter
    """Which pieces of a message are aimed at the assistant (fitted on assistant/data/requests/, not the bank)."""
    report: dict[str, object] = field(default_factory=dict)


def group_folds(groups: Sequence[str], folds: int) -> list[np.ndarray]:
    """Fold number per item: whole authors per fold, assigned greedily largest first (deterministic)."""
    names, counts = np.unique(np.asarray(groups), return_counts=True)
    order = sorted(zip(names, counts, strict=True), key=lambda pair: (-pair[1], pair[0]))
    load = [0] * folds
    fold_of: dict[str, int] = {}
    for name, count in order:
        target = min(range(folds), key=lambda f: (load[f], f))
        fold_of[str(name)] = target
        load[target] += int(count)
    assignment = np.array([fold_of[str(g)] for g in groups])
    return [np.flatnonzero(assignment == f) for f in range(folds)]
