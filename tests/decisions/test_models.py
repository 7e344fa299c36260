"""The fitted heads' building blocks: threshold fitting, objectives, folds (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from assistant.decisions.models import OBJECTIVES, SituationDecision, fit_threshold, group_folds


def _brute_force(y: np.ndarray, scores: np.ndarray, objective: str) -> float:
    values = np.unique(scores)
    cuts = (values[:-1] + values[1:]) / 2
    results = []
    for cut in cuts:
        predicted = scores >= cut
        tp, fp = np.sum(y & predicted), np.sum(~y & predicted)
        fn, tn = np.sum(y & ~predicted), np.sum(~y & ~predicted)
        counts = [np.array([float(v)]) for v in (tp, fp, fn, tn)]
        results.append(float(OBJECTIVES[objective](*counts)[0]))
    best = np.flatnonzero(np.array(results) >= max(results) - 1e-12)
    return float(cuts[best[len(best) // 2]])


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fitted_cut_is_the_best_cut(objective: str, seed: int) -> None:
    random = np.random.default_rng(seed)
    y = random.random(400) < 0.3
    scores = np.round(y * 0.3 + random.random(400) * 0.7, 3)  # ties included
    assert fit_threshold(y, scores, objective) == pytest.approx(_brute_force(y, scores, objective))


def test_a_perfectly_separated_cut_falls_between_the_classes() -> None:
    y = np.array([False, False, True, True])
    assert fit_threshold(y, np.array([0.1, 0.2, 0.8, 0.9]), "f1") == pytest.approx(0.5)


def test_the_answer_weighted_objective_counts_a_missed_answer_twice() -> None:
    one_miss = OBJECTIVES["answer_weighted_accuracy"](*(np.array([v]) for v in (9.0, 0.0, 1.0, 10.0)))
    one_wrong_answer = OBJECTIVES["answer_weighted_accuracy"](*(np.array([v]) for v in (10.0, 1.0, 0.0, 9.0)))
    assert one_miss[0] < one_wrong_answer[0]


def test_folds_keep_each_author_whole_and_are_deterministic() -> None:
    authors = [f"a{i % 7}" for i in range(70)] + ["big"] * 30
    folds = group_folds(authors, 5)
    again = group_folds(list(authors), 5)
    assert all(np.array_equal(a, b) for a, b in zip(folds, again, strict=True))
    assert sorted(np.concatenate(folds).tolist()) == list(range(100))
    fold_of_author: dict[str, set[int]] = {}
    for number, fold in enumerate(folds):
        for i in fold:
            fold_of_author.setdefault(authors[i], set()).add(number)
    assert all(len(numbers) == 1 for numbers in fold_of_author.values())


def test_a_situation_needs_both_an_own_matter_and_its_topic() -> None:
    features = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]] * 10)
    own = LogisticRegression().fit(features, features[:, 0] > 0.5)
    topic = LogisticRegression().fit(features[:, :2], features[:, 1] > 0.5)
    decision = SituationDecision(("t",), own, {"t": topic}, {"t": 0.5}, topic_columns=2)
    assert [sorted(s) for s in decision.decide(features[:4])] == [[], ["t"], [], []]


@pytest.mark.parametrize("sparse_input", [False, True])
def test_positive_gives_what_predict_proba_gives(sparse_input: bool) -> None:
    from scipy import sparse

    from assistant.decisions.models import positive

    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 40)) * (rng.random((300, 40)) < 0.2)
    y = (x[:, :5].sum(axis=1) + rng.normal(scale=0.5, size=300)) > 0
    model = LogisticRegression(C=1.0, max_iter=1000).fit(sparse.csr_matrix(x) if sparse_input else x, y)
    features = sparse.csr_matrix(x) if sparse_input else x
    expected = model.predict_proba(features)[:, 1]
    got = positive(model, features)
    assert got.shape == expected.shape
    assert np.allclose(got, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("sparse_input", [False, True])
def test_class_probabilities_give_what_predict_proba_gives(sparse_input: bool) -> None:
    from scipy import sparse

    from assistant.decisions.models import class_probabilities

    rng = np.random.default_rng(11)
    x = rng.normal(size=(400, 30)) * (rng.random((400, 30)) < 0.3)
    y = np.argmax(x[:, :4] + rng.normal(scale=0.3, size=(400, 4)), axis=1)  # four classes
    features = sparse.csr_matrix(x) if sparse_input else x
    model = LogisticRegression(C=1.0, max_iter=1000).fit(features, y)
    expected = model.predict_proba(features)
    got = class_probabilities(model, features)
    assert got.shape == expected.shape == (400, 4)
    assert np.allclose(got, expected, rtol=0, atol=1e-15)
    two = LogisticRegression(max_iter=1000).fit(features, y > 1)
    assert np.allclose(class_probabilities(two, features), two.predict_proba(features), rtol=0, atol=1e-15)


def test_the_scaled_logistic_ranker_is_frozen_and_gives_what_its_pipeline_gives() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from assistant.decisions.models import RankerDecision
    from assistant.frozen import ScaledLogistic

    rng = np.random.default_rng(11)
    x = rng.normal(loc=3.0, scale=[0.5 + k for k in range(12)], size=(400, 12))
    x[:, 3] = 2.0  # a constant feature: the scaler keeps a scale of 1 for it
    y = (x[:, 0] - 3.0 + 0.2 * x[:, 5] + rng.normal(scale=0.5, size=400)) > 0.3
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=1000)).fit(x, y)
    expected = model.predict_proba(x[:50])[:, 1]
    ranker = RankerDecision(model, 0.5)
    assert isinstance(ranker.model, ScaledLogistic)
    got = ranker.probability(x[:50])
    assert got.shape == expected.shape
    assert np.allclose(got, expected, rtol=0, atol=1e-12)
    assert np.allclose(ranker.model.predict_proba(x), model.predict_proba(x), rtol=0, atol=1e-12)
