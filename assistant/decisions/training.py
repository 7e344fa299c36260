"""Fit every decision on the question bank, with thresholds and figures from cross-validation by author.

The bank is split into folds that never split an author (a voice the model has not read is what a
new user is). For each decision, the fold models' out-of-fold predictions fit its threshold and give
its figures; the figures are computed with thresholds fitted on the *other* folds only, so a
threshold never grades itself. The final models are then fitted on the whole bank.

Stacking follows the pipeline's order: the situation decision's and the section decision's
out-of-fold outputs, and the votes of each question's neighbours from other folds, feed the
ranker's features; the ranker's out-of-fold ranking feeds the coverage decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np
from joblib import Parallel, delayed
from joblib.externals.loky import get_reusable_executor
from scipy import sparse
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from assistant.bank import Bank, BankItem
from assistant.conversation import TurnRequest, ViewBuilder
from assistant.corpus import ESCALATION_TRIGGER_IDS
from assistant.decisions.judge import bullet_rows, coverage_matrix, coverage_summary, situation_of
from assistant.decisions.models import (
    SEED,
    BinaryDecision,
    Decisions,
    RankerDecision,
    SectionDecision,
    SituationDecision,
    fit_threshold,
    group_folds,
    logistic,
)
from assistant.decisions.neighbours import Neighbours, Votes
from assistant.features import (
    CUE_GROUPS,
    QueryView,
    TextVectorizer,
    message_sentences,
    question_matrix,
    situation_matrix,
)
from assistant.requests_filter import fit_request_filter, load_messages, plain_messages
from assistant.retrieval import LexicalScores, Ranking, rank
from assistant.sentences import SentenceTable
from assistant.settings import DecisionSettings

Progress = Callable[[str], None]
Ranker: TypeAlias = HistGradientBoostingClassifier | Pipeline


@dataclass(frozen=True)
class TrainingData:
    """The bank as the decisions see it."""

    items: tuple[BankItem, ...]
    views: list[QueryView]
    features: sparse.csr_matrix
    folds: list[np.ndarray]
    fold_of: np.ndarray
    gold_rows: list[set[int]]
    covered: np.ndarray
    train_sets: list[np.ndarray]
    """Per fold, the items a fold model is fitted on: the other folds' items, less any near-copy of a
    question in the fold (so the figures and thresholds are those of questions the bank has not seen)."""
    similarity: np.ndarray


def bank_requests(items: Sequence[BankItem]) -> list[TurnRequest]:
    """Each bank message as a turn of its chat (as a chat would send it)."""
    return [TurnRequest(item.message, tuple(item.history)) for item in items]


def gold_rows(table: SentenceTable, bank: Bank, item: BankItem) -> set[int]:
    """The table rows a gold span covers: sentences at least half inside one (or holding half of it)."""
    rows: set[int] = set()
    for gold in bank.gold[item.id]:
        for sentence in table.sentences:
            if sentence.source_id != gold.source_id:
                continue
            overlap = min(sentence.end, gold.end) - max(sentence.start, gold.start)
            if overlap > 0 and overlap >= 0.5 * min(sentence.end - sentence.start, gold.end - gold.start):
                rows.add(sentence.row)
    return rows


def _cross_fitted(y: np.ndarray, scores: np.ndarray, folds: list[np.ndarray], objective: str) -> np.ndarray:
    """Decisions for every item made with a threshold fitted on the other folds' predictions."""
    decided = np.zeros(len(y), dtype=bool)
    for fold in folds:
        others = np.setdiff1d(np.arange(len(y)), fold)
        decided[fold] = scores[fold] >= fit_threshold(y[others], scores[others], objective)
    return decided


def binary_figures(y: np.ndarray, decided: np.ndarray) -> dict[str, float | int]:
    """Confusion counts, precision, recall and F1 of a yes/no decision."""
    y, decided = np.asarray(y, dtype=bool), np.asarray(decided, dtype=bool)
    tp, fp = int(np.sum(y & decided)), int(np.sum(~y & decided))
    fn, tn = int(np.sum(y & ~decided)), int(np.sum(~y & ~decided))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }


def _fit_sections(
    features: sparse.csr_matrix, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray, c: float
) -> LogisticRegression:
    return logistic(c).fit(features[rows], labels, sample_weight=weights)


def _fit_situation(
    features: sparse.csr_matrix, expected: np.ndarray, rows: np.ndarray, own_c: float, topic_c: float
) -> SituationDecision:
    """The situation heads fitted on ``rows`` (thresholds come later): 'own situation', then one per situation."""
    own = expected[rows].any(axis=1)
    own_model = logistic(own_c, balanced=True).fit(features[rows], own)
    positives = rows[own]
    words = features.shape[1] - len(CUE_GROUPS)
    topics = {
        t: logistic(topic_c).fit(features[positives, :words], expected[positives, k])
        for k, t in enumerate(ESCALATION_TRIGGER_IDS)
    }
    return SituationDecision(ESCALATION_TRIGGER_IDS, own_model, topics, {}, words)


def _fit_binary(features: sparse.csr_matrix, y: np.ndarray, rows: np.ndarray | None, c: float) -> LogisticRegression:
    """A balanced logistic head fitted on ``rows`` (None: every row)."""
    if rows is None:
        return logistic(c, balanced=True).fit(features, y)
    return logistic(c, balanced=True).fit(features[rows], y[rows])


class Trainer:
    """Fits :class:`Decisions` on a bank against one index's sentence table."""

    def __init__(
        self,
        table: SentenceTable,
        views: ViewBuilder,
        settings: DecisionSettings,
        depth: int,
        progress: Progress | None = None,
    ) -> None:
        self.table = table
        self.view_builder = views
        self.settings = settings
        self.depth = depth
        self.progress = progress or (lambda message: None)
        rows = bullet_rows(table)
        self.bullet_vectors = table.vectors[[rows[t] for t in ESCALATION_TRIGGER_IDS]]
        self._heading_index = {s.heading: i for i, s in enumerate(table.sections)}

    def data(self, bank: Bank, vectorizer: TextVectorizer) -> TrainingData:
        """Views, question features, folds and gold rows of every bank item."""
        items = bank.items
        views = self.view_builder.views(bank_requests(items))
        folds = group_folds([item.author for item in items], self.settings.folds)
        fold_of = np.zeros(len(items), dtype=int)
        for number, fold in enumerate(folds):
            fold_of[fold] = number
        vectors = np.vstack([v.vector for v in views])
        similarity = vectors @ vectors.T
        train_sets = []
        for number, fold in enumerate(folds):
            near = (similarity[fold] >= self.settings.near_copy).any(axis=0)
            train_sets.append(np.flatnonzero((fold_of != number) & ~near))
        return TrainingData(
            items,
            views,
            question_matrix(views, vectorizer, self.bullet_vectors),
            folds,
            fold_of,
            [gold_rows(self.table, bank, item) for item in items],
            np.array([item.covered for item in items]),
            train_sets,
            similarity,
        )

    # -- situation -----------------------------------------------------------------------------------

    def _parallel(self, calls: Iterable[Any]) -> list[Any]:
        """``joblib.delayed`` calls run in ``settings.jobs`` worker processes, results in the calls' order.

        The workers are kept for the fit's next step and let go at the end of :meth:`train`.
        """
        return list(Parallel(n_jobs=self.settings.jobs, prefer="processes")(calls))

    def situations(
        self, data: TrainingData, vectorizer: TextVectorizer
    ) -> tuple[SituationDecision, list[set[str]], dict[str, object]]:
        """The fitted decision, each item's out-of-fold situations, and the figures."""
        texts = [v.conversation for v in data.views]
        features = situation_matrix(texts, vectorizer)
        expected = np.column_stack([[t in item.triggers for item in data.items] for t in ESCALATION_TRIGGER_IDS])
        everything = np.arange(len(data.items))
        scores = np.zeros(expected.shape)
        own_c, topic_c = self.settings.situation_own_c, self.settings.situation_topic_c
        *fold_models, final = self._parallel(
            delayed(_fit_situation)(features, expected, rows, own_c, topic_c) for rows in [*data.train_sets, everything]
        )
        for fold, model in zip(data.folds, fold_models, strict=True):
            parts, part_of = message_sentences([texts[i] for i in fold])
            probabilities = model.probabilities(
                features[fold], situation_matrix(parts, vectorizer) if parts else None, part_of
            )
            scores[fold] = np.column_stack([probabilities[t] for t in ESCALATION_TRIGGER_IDS])
        fired = np.column_stack(
            [_cross_fitted(expected[:, k], scores[:, k], data.folds, "f1") for k in range(expected.shape[1])]
        )
        figures: dict[str, object] = {
            t: binary_figures(expected[:, k], fired[:, k]) for k, t in enumerate(ESCALATION_TRIGGER_IDS)
        }
        figures["micro"] = binary_figures(expected.ravel(), fired.ravel())
        near = np.array([item.kind == "near_miss" for item in data.items])
        figures["near_miss_false_rate"] = round(float(fired[near].any(axis=1).mean()), 4) if near.any() else None
        thresholds = {
            t: fit_threshold(expected[:, k], scores[:, k], "f1") for k, t in enumerate(ESCALATION_TRIGGER_IDS)
        }
        decision = replace(final, thresholds=thresholds)
        oof = [{t for k, t in enumerate(ESCALATION_TRIGGER_IDS) if fired[i, k]} for i in everything]
        return decision, oof, figures

    # -- sections -------------------------------------------------------------------------------------

    def section_classes(self, items: Sequence[BankItem]) -> tuple[tuple[str, ...], np.ndarray]:
        """The classes (sections with enough questions, one pooled class per kind) and how they spread."""
        counts: dict[str, int] = {}
        for item in items:
            for section in item.sections:
                counts[section] = counts.get(section, 0) + 1
        own = sorted(s for s, n in counts.items() if n >= self.settings.min_section_questions)
        classes = tuple(own + sorted(f"({kind})" for kind in self.table.kinds))
        spread = np.zeros((len(classes), len(self.table.sections)))
        for column, info in enumerate(self.table.sections):
            name = info.heading if info.heading in own else f"({info.kind})"
            spread[classes.index(name), column] = 1.0
        spread /= np.maximum(spread.sum(axis=1, keepdims=True), 1.0)
        return classes, spread

    def _section_targets(
        self, data: TrainingData, classes: tuple[str, ...], subset: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kinds = {s.heading: s.kind for s in self.table.sections}
        rows, labels, weights = [], [], []
        for index in subset:
            item = data.items[index]
            for section in item.sections:
                rows.append(index)
                labels.append(section if section in classes else f"({kinds[section]})")
                weights.append(1.0 / len(item.sections))
        return np.array(rows, dtype=int), np.array(labels), np.array(weights)

    def sections(self, data: TrainingData) -> tuple[SectionDecision, np.ndarray, dict[str, float]]:
        """The fitted decision, out-of-fold section probabilities, and the figures (folds fitted in parallel)."""
        covered = np.flatnonzero(data.covered)
        classes, spread = self.section_classes([data.items[i] for i in covered])
        subsets = [np.intersect1d(train, covered) for train in data.train_sets] + [covered]
        jobs = [self._section_targets(data, classes, subset) for subset in subsets]
        models = self._parallel(
            delayed(_fit_sections)(data.features, rows, labels, weights, self.settings.section_c)
            for rows, labels, weights in jobs
        )
        oof = np.zeros((len(data.items), len(self.table.sections)))
        for fold, model in zip(data.folds, models, strict=False):
            oof[fold] = SectionDecision(model, classes, spread).probabilities(data.features[fold])
        top1 = top3 = 0
        for i in covered:
            headings = [self.table.sections[j].heading for j in np.argsort(-oof[i], kind="stable")[:3]]
            top1 += headings[0] in data.items[i].sections
            top3 += any(h in data.items[i].sections for h in headings)
        figures = {"top1": round(top1 / len(covered), 4), "top3": round(top3 / len(covered), 4)}
        return SectionDecision(models[-1], classes, spread), oof, figures

    # -- neighbours and ranker ----------------------------------------------------------------------------

    def neighbours(self, data: TrainingData) -> Neighbours:
        """The bank's questions with their labels, for voting."""
        return Neighbours.of(
            np.vstack([v.vector for v in data.views]),
            data.gold_rows,
            [[self._heading_index[s] for s in item.sections] for item in data.items],
            data.covered,
            len(self.table.sentences),
            len(self.table.sections),
        )

    def votes(self, data: TrainingData, neighbours: Neighbours) -> list[Votes]:
        """Each item's votes from bank questions of other folds that are not near-copies of it.

        Eval sets hold no near-copy of a bank question (``tests/test_bank.py``), and a new user's question is
        rarely one: the decisions learn to use neighbours that are merely alike, not ones that give the answer away.
        """
        return [
            neighbours.votes(
                view.vector, (data.fold_of != data.fold_of[i]) & (data.similarity[i] < self.settings.near_copy)
            )
            for i, view in enumerate(data.views)
        ]

    def _ranker_model(self) -> Ranker:
        if self.settings.ranker == "logistic":
            return make_pipeline(StandardScaler(), logistic(self.settings.ranker_c))
        return HistGradientBoostingClassifier(
            max_iter=self.settings.ranker_iterations,
            learning_rate=self.settings.ranker_learning_rate,
            min_samples_leaf=self.settings.ranker_min_leaf,
            l2_regularization=self.settings.ranker_l2,
            early_stopping=False,
            random_state=SEED,
        )

    def fit_ranker(self, rankings: Sequence[Ranking], gold: Sequence[set[int]]) -> Ranker:
        """The ranker fitted on the given items' candidates: every gold one, and a seeded sample of the others.

        A uniform sample changes the base rate, not the order the ranker learns.
        """
        random = np.random.default_rng(SEED)
        features, labels = [], []
        for ranking, rows in zip(rankings, gold, strict=True):
            positive = np.isin(ranking.rows, list(rows))
            keep = positive | (random.random(len(positive)) < self.settings.ranker_negative_share)
            features.append(ranking.features[keep])
            labels.append(positive[keep])
        return self._ranker_model().fit(np.vstack(features), np.concatenate(labels))

    def ranker(
        self,
        data: TrainingData,
        section_oof: np.ndarray,
        triggers: Sequence[set[str]],
        lexical: Sequence[LexicalScores],
        votes: Sequence[Votes],
    ) -> tuple[RankerDecision, list[Ranking], dict[str, float]]:
        """The fitted ranker, every item's out-of-fold ranking, and the figures."""
        candidates = [
            rank(
                self.table,
                data.views[i],
                lexical[i],
                section_oof[i],
                situation_of(self.table, [t for t in ESCALATION_TRIGGER_IDS if t in triggers[i]]),
                votes[i],
                self.depth,
                lambda features: features[:, 0],
            )
            for i in range(len(data.items))
        ]
        covered = np.flatnonzero(data.covered)
        fitted_on = np.arange(len(data.items)) if self.settings.ranker_on_uncovered else covered
        oof = list(candidates)
        for number, fold in enumerate(data.folds):
            self.progress(f"Ranker, fold {number + 1} of {len(data.folds)}")
            train = np.intersect1d(data.train_sets[number], fitted_on)
            model = self.fit_ranker([candidates[i] for i in train], [data.gold_rows[i] for i in train])
            for i in fold:
                probabilities = model.predict_proba(candidates[i].features)[:, 1]
                order = np.argsort(-probabilities, kind="stable")
                oof[i] = Ranking(candidates[i].rows[order], probabilities[order], candidates[i].features[order])
        # A supporting point is a further gold sentence: the cut that best tells them from the rest (F1).
        support_y = np.concatenate([np.isin(oof[i].rows[1:], list(data.gold_rows[i])) for i in covered])
        support_scores = np.concatenate([oof[i].probabilities[1:] for i in covered])
        support = fit_threshold(support_y, support_scores, "f1")
        model = self.fit_ranker([candidates[i] for i in fitted_on], [data.gold_rows[i] for i in fitted_on])
        return RankerDecision(model, support), oof, self._ranker_figures(data, candidates, oof)

    def _ranker_figures(self, data: TrainingData, candidates: list[Ranking], oof: list[Ranking]) -> dict[str, float]:
        items = np.flatnonzero(data.covered)
        recall = hit1 = hit3 = section3 = 0.0
        for i in items:
            gold = data.gold_rows[i]
            recall += len(gold & set(candidates[i].rows.tolist())) / max(len(gold), 1)
            top = oof[i].rows[:3].tolist()
            hit1 += bool(top) and top[0] in gold
            hit3 += bool(gold & set(top))
            sections = list(dict.fromkeys(self.table.sentences[r].section for r in oof[i].rows[:12]))[:3]
            section3 += any(s in data.items[i].sections for s in sections)
        count = len(items)
        return {
            "candidate_gold_recall": round(recall / count, 4),
            "gold_hit@1": round(hit1 / count, 4),
            "gold_hit@3": round(hit3 / count, 4),
            "section_hit@3": round(section3 / count, 4),
        }

    # -- yes/no heads on question features ----------------------------------------------------------------

    def _binary(
        self, features: sparse.csr_matrix, y: np.ndarray, data: TrainingData, c: float, objective: str
    ) -> tuple[BinaryDecision, np.ndarray]:
        """A balanced logistic head: the fitted decision and its cross-fitted out-of-fold decisions."""
        scores = np.zeros(len(y))
        *fold_models, model = self._parallel(
            delayed(_fit_binary)(features, y, rows, c) for rows in [*data.train_sets, None]
        )
        for fold, fold_model in zip(data.folds, fold_models, strict=True):
            scores[fold] = fold_model.predict_proba(features[fold])[:, 1]
        decided = _cross_fitted(y, scores, data.folds, objective)
        return BinaryDecision(model, fit_threshold(y, scores, objective)), decided

    def list_targets(self, data: TrainingData) -> np.ndarray:
        """Whether a message asks for a whole list.

        It does when its gold holds ``list_items`` or more items (bullets, or labelled paragraphs) of one section.
        """
        targets = []
        for rows in data.gold_rows:
            lists: dict[int, int] = {}
            for row in rows:
                if self.table.sentences[row].is_item:
                    section = int(self.table.section_of[row])
                    lists[section] = lists.get(section, 0) + 1
            targets.append(max(lists.values(), default=0) >= self.settings.list_items)
        return np.array(targets)

    # -- everything ---------------------------------------------------------------------------------------

    def train(self, bank: Bank) -> Decisions:
        """Fit every decision; the returned ``report`` holds the cross-validation figures."""
        try:
            return self._train(bank)
        finally:
            if self.settings.jobs > 1:
                # joblib keeps its worker processes for reuse, idle for minutes with the fold data in memory; a
                # fit happens once per build, so they are let go now rather than outlive it (or its process).
                get_reusable_executor().shutdown(wait=True)

    def _train(self, bank: Bank) -> Decisions:
        started = time.perf_counter()
        self.progress(f"embedding {len(bank.items)} bank messages")
        vectorizer = TextVectorizer().fit([item.message for item in bank.items])
        data = self.data(bank, vectorizer)
        report: dict[str, object] = {"bank": bank.sizes(), "folds": self.settings.folds}

        self.progress("situations")
        situation, oof_triggers, report["situation"] = self.situations(data, vectorizer)
        self.progress("sections")
        sections, section_oof, report["sections"] = self.sections(data)

        self.progress("ranker")
        lexical = LexicalScores.of(self.table, data.views)
        neighbours = self.neighbours(data)
        votes = self.votes(data, neighbours)
        ranker, rankings, report["ranker"] = self.ranker(data, section_oof, oof_triggers, lexical, votes)

        self.progress("coverage and lists")
        summaries = np.vstack(
            [
                coverage_summary(self.table, data.views[i], rankings[i], section_oof[i], lexical[i])
                for i in range(len(data.items))
            ]
        )
        coverage, covered_cv = self._binary(
            coverage_matrix(data.features, summaries),
            data.covered,
            data,
            self.settings.coverage_c,
            "answer_weighted_accuracy",
        )
        report["coverage"] = {
            **binary_figures(~data.covered, ~covered_cv),
            "answerable_answered": round(float(covered_cv[data.covered].mean()), 4),
            "unanswerable_declined": round(float((~covered_cv[~data.covered]).mean()), 4),
        }
        list_y = self.list_targets(data)
        wants_list, list_cv = self._binary(data.features, list_y, data, self.settings.list_c, "f1")
        report["wants_list"] = binary_figures(list_y, list_cv)
        report["thresholds"] = {
            **{f"situation.{t}": round(cut, 4) for t, cut in situation.thresholds.items()},
            "ranker.support": round(ranker.support_threshold, 4),
            "coverage": round(coverage.threshold, 4),
            "wants_list": round(wants_list.threshold, 4),
        }
        self.progress("requests aimed at the assistant")
        requests = fit_request_filter(
            load_messages(),
            self.settings.folds,
            self.settings.request_ngrams,
            self.settings.request_c,
            jobs=self.settings.jobs,
            plain=plain_messages((item.id, item.message) for item in bank.items if item.kind != "injection"),
        )
        report["requests"] = requests.report
        report["seconds"] = round(time.perf_counter() - started, 2)
        return Decisions(vectorizer, situation, sections, ranker, coverage, wants_list, neighbours, requests, report)
