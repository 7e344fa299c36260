"""The fitted decisions applied to a question: whose situation, which sections, which sentences, covered or not.

The same functions serve training (over the whole bank at once) and answering (one question), so the
models are fitted on exactly the features they later see.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from assistant.corpus import ESCALATION_HEADING, ESCALATION_TRIGGER_IDS
from assistant.decisions.models import Decisions
from assistant.features import (
    QueryView,
    Situation,
    TextVectorizer,
    message_sentences,
    question_matrix,
    situation_matrix,
)
from assistant.retrieval import LexicalScores, Ranking, rank
from assistant.sentences import SentenceTable
from assistant.stacking import hstack_rows
from assistant.tokens import content_tokens

COVERAGE_SUMMARY = (
    "unknown_word_share",
    "unknown_words",
    "best_probability",
    "second_probability",
    "top3_mean_probability",
    "best_sentence_sim",
    "best_paragraph_sim",
    "best_bm25",
    "best_section_probability",
)
"""What the coverage decision knows of the ranking, beside the question's own features. Left out, because
by grouped CV on the bank they add nothing (balanced accuracy within 0.002 with and without) while they
mislead on some questions: the neighbours' coverage vote, which carries the bank's labelling habits to
questions unlike any in it, and the entropy of the section decision, which counts a situation that
spans several sections ("I want to release a remix built on AI stems. What should I know?") against it."""


def bullet_rows(table: SentenceTable) -> dict[str, int]:
    """The table row of each 'When to Ask a Lawyer' bullet, by trigger id (the article's order)."""
    rows = [s.row for s in table.sentences if s.source_id == "article" and s.section == ESCALATION_HEADING]
    bullets = [r for r in rows if table.sentences[r].is_list_item]
    return dict(zip(ESCALATION_TRIGGER_IDS, bullets, strict=True))


def situation_of(table: SentenceTable, triggers: Sequence[str]) -> Situation:
    """The bullets of the given situations, as the ranker's situation features need them."""
    if not triggers:  # most questions: no bullet to look up
        return Situation()
    rows = bullet_rows(table)
    chosen = [rows[t] for t in triggers]
    return Situation(frozenset(chosen), table.vectors[chosen] if chosen else None)


def coverage_summary(
    table: SentenceTable,
    view: QueryView,
    ranking: Ranking,
    section_probs: np.ndarray,
    lexical: LexicalScores,
) -> np.ndarray:
    """The question's and the ranking's signals of coverage (columns: :data:`COVERAGE_SUMMARY`).

    Words the corpus never uses ("install", "Japan", "per hour") say that a question asks for something the
    corpus does not hold, whatever words it shares with it.
    """
    probabilities = ranking.probabilities
    padded = np.concatenate([probabilities, np.zeros(3)])
    tokens = content_tokens(view.message)
    unknown = sum(1 for token in tokens if not table.sentence_bm25.knows(token))
    return np.array(
        [
            unknown / max(len(tokens), 1),
            float(np.log1p(unknown)),
            padded[0],
            padded[1],
            float(padded[:3].mean()),
            float(ranking.features[:, 0].max()) if len(ranking.features) else 0.0,
            float(ranking.features[:, 1].max()) if len(ranking.features) else 0.0,
            float(np.log1p(lexical.sentences.max())),
            float(section_probs.max()),
        ]
    )


def coverage_matrix(questions: sparse.csr_matrix, summaries: np.ndarray) -> sparse.csr_matrix:
    """The coverage decision's features: the question's and the ranking's."""
    return hstack_rows([questions, summaries])


@dataclass(frozen=True)
class Judgement:
    """What the decisions say about one user turn."""

    section_probs: np.ndarray
    ranking: Ranking
    covered: bool
    coverage_probability: float
    wants_list: bool


class Judge:
    """Applies the fitted :class:`Decisions` to questions."""

    def __init__(self, decisions: Decisions, table: SentenceTable, depth: int) -> None:
        self.decisions = decisions
        self.table = table
        self.depth = depth
        rows = bullet_rows(table)
        self._bullet_vectors = table.vectors[[rows[t] for t in ESCALATION_TRIGGER_IDS]]

    @property
    def vectorizer(self) -> TextVectorizer:
        """The fitted n-gram vectoriser."""
        vectorizer = self.decisions.vectorizer
        assert isinstance(vectorizer, TextVectorizer)
        return vectorizer

    def question_features(self, views: Sequence[QueryView]) -> sparse.csr_matrix:
        """Question features for many views at once."""
        return question_matrix(views, self.vectorizer, self._bullet_vectors)

    def triggers(self, texts: Sequence[str]) -> list[set[str]]:
        """The user's own situations each text (a conversation, or one message) tells of."""
        if not texts:
            return []
        distinct = list(dict.fromkeys(texts))
        if len(distinct) < len(texts):  # a first message is also its own conversation: judged once
            found = dict(zip(distinct, self.triggers(distinct), strict=True))
            return [set(found[text]) for text in texts]
        parts, part_of = message_sentences(texts)
        part_features = situation_matrix(parts, self.vectorizer) if parts else None
        return self.decisions.situation.decide(situation_matrix(texts, self.vectorizer), part_features, part_of)

    def judge(self, view: QueryView, features: sparse.csr_matrix, situation: Sequence[str]) -> Judgement:
        """Every decision but the situation's for one turn.

        ``features`` are its one-row question features; ``situation`` the situations that apply to it, whose
        bullets the ranker may then prefer.
        """
        section_probs = self.decisions.sections.probabilities(features)[0]
        lexical = LexicalScores.of(self.table, [view])[0]
        votes = self.decisions.neighbours.votes(view.vector)
        ranking = rank(
            self.table,
            view,
            lexical,
            section_probs,
            situation_of(self.table, [t for t in ESCALATION_TRIGGER_IDS if t in situation]),
            votes,
            self.depth,
            self.decisions.ranker.probability,
        )
        summary = coverage_summary(self.table, view, ranking, section_probs, lexical)
        coverage = float(self.decisions.coverage.probability(coverage_matrix(features, summary[None, :]))[0])
        return Judgement(
            section_probs=section_probs,
            ranking=ranking,
            covered=coverage >= self.decisions.coverage.threshold,
            coverage_probability=coverage,
            wants_list=bool(self.decisions.wants_list.decide(features)[0]),
        )
