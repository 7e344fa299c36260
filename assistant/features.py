"""What the learned decisions see: a question as vectors and words, and each candidate sentence beside it.

Two kinds of features:

- **question features** (situation, coverage, section and list decisions): the embedding of the
  message and of the message in its conversation, their similarity to each "When to Ask a Lawyer"
  bullet, and TF-IDF over word and character n-grams (first person, tense, hypotheticals, typos and
  foreign words are all visible to a linear model through these);
- **pair features** (the sentence ranker): how a candidate sentence, its paragraph, its chunk and
  its section heading match the question, densely and lexically, where it stands, and what the
  other decisions said (the predicted section, the user's situation).

Nothing here is tuned: the models in ``assistant.decisions`` weigh these features, fitted on the bank.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import numpy as np
import yaml
from scipy import sparse

from assistant.decisions.neighbours import Votes
from assistant.frozen import Tfidf, freeze
from assistant.sentences import SentenceTable
from assistant.stacking import hstack_rows

TFIDF_MIN_DF = 2
"""A word or character n-gram must occur in two bank messages to become a feature: one-off n-grams only
let a model memorise single messages."""


@dataclass(frozen=True)
class QueryView:
    """One user turn as the decisions see it."""

    message: str
    """The cleaned message as the user wrote it."""
    text: str
    """The message prepared for matching (foreign words translated, typos mended)."""
    context: str
    """The message in its conversation: what it follows up (the earlier question or quoted item) and itself.
    Equal to ``text`` for a first message."""
    conversation: str
    """The message and the user's earlier messages, newest first: what tells whose situation it is."""
    vector: np.ndarray
    context_vector: np.ndarray
    statute_sections: tuple[str, ...] = ()
    treaty_articles: tuple[str, ...] = ()
    excluded_rows: frozenset[int] = field(default_factory=frozenset)
    """Sentences the previous answer already quoted: a follow-up gets something new."""


ROW_CACHE_BATCH = 16
"""Calls with at most this many texts go through the row cache: a question's calls carry one to a few texts,
while fitting transforms the bank's thousands at once, straight through."""
ROW_CACHE_TEXTS = 1024
"""Rows remembered per vectorizer: repeats happen within one question, so this only needs to cover the
questions being answered at once, with room to spare (each row is a few kilobytes)."""


class TextVectorizer:
    """TF-IDF over word uni- and bigrams and character 2-4-grams of the message, fitted on the bank."""

    _words: Tfidf
    _chars: Tfidf

    def fit(self, texts: Sequence[str]) -> TextVectorizer:
        """Learn the vocabulary and weights from the bank's messages (with scikit-learn), and keep them frozen."""
        from sklearn.feature_extraction.text import TfidfVectorizer

        words = TfidfVectorizer(ngram_range=(1, 2), min_df=TFIDF_MIN_DF, sublinear_tf=True, lowercase=True)
        chars = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 4), min_df=TFIDF_MIN_DF, sublinear_tf=True, lowercase=True
        )
        self._words = freeze(words.fit(texts))
        self._chars = freeze(chars.fit(texts))
        return self

    def _transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        return hstack_rows([self._words.transform(texts), self._chars.transform(texts)])

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Rows of word and character n-gram weights.

        A question's few texts are remembered row by row: one turn transforms its message for the situation,
        again for the question's features and once more as its context, and each row is the same every time.
        """
        texts = list(texts)
        if len(texts) > ROW_CACHE_BATCH:
            return self._transform(texts)
        cache_, lock = self._row_cache()
        with lock:
            found = {t: cache_[t] for t in texts if t in cache_}
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            fresh = self._transform(missing)
            with lock:
                for i, text in enumerate(missing):
                    found[text] = cache_[text] = fresh[i]
                while len(cache_) > ROW_CACHE_TEXTS:
                    cache_.popitem(last=False)
        if len(texts) == 1:  # the remembered row itself (callers stack it, never change it)
            return found[texts[0]]
        return sparse.vstack([found[t] for t in texts], format="csr")

    def _row_cache(self) -> tuple[OrderedDict[str, sparse.csr_matrix], threading.Lock]:
        held = self.__dict__.get("_rows")
        if held is None:
            held = self.__dict__.setdefault("_rows", (OrderedDict(), threading.Lock()))
        return held  # type: ignore[no-any-return]

    def __getstate__(self) -> dict[str, object]:
        """Pickled without the remembered rows (and their lock)."""
        return {k: v for k, v in self.__dict__.items() if k != "_rows"}


def question_matrix(
    views: Sequence[QueryView], vectorizer: TextVectorizer, bullet_vectors: np.ndarray
) -> sparse.csr_matrix:
    """Question features, one row per view: embeddings, bullet similarities, and n-grams of message and context."""
    vectors = np.vstack([v.vector for v in views])
    contexts = np.vstack([v.context_vector for v in views])
    dense = np.hstack([vectors, contexts, vectors @ bullet_vectors.T, contexts @ bullet_vectors.T])
    messages = vectorizer.transform([v.message for v in views])
    context_words = vectorizer.transform([v.context for v in views])
    return hstack_rows([dense, messages, context_words])


@cache
def _cues() -> dict[str, list[re.Pattern[str]]]:
    data = yaml.safe_load(resources.files("assistant").joinpath("data/cues.yaml").read_text(encoding="utf-8"))
    if tuple(data) != CUE_GROUPS:
        raise ValueError(f"data/cues.yaml must hold the groups {CUE_GROUPS} in that order, not {tuple(data)}.")
    return {name: [re.compile(p, re.IGNORECASE) for p in patterns] for name, patterns in data.items()}


def cue_matrix(texts: Sequence[str]) -> np.ndarray:
    """Per text, how often each cue group of ``data/cues.yaml`` occurs, scaled by the square root of its length."""
    rows = []
    for text in texts:
        scale = np.sqrt(max(len(text.split()), 1))
        rows.append([sum(len(p.findall(text)) for p in patterns) / scale for patterns in _cues().values()])
    return np.array(rows, dtype=float).reshape(len(texts), len(_cues()))


CUE_GROUPS = ("first_person", "other_people", "hypothetical", "over", "planned", "now", "asks_in_general")
"""The cue groups of ``data/cues.yaml``, in its order (checked when the file is read)."""


def situation_matrix(texts: Sequence[str], vectorizer: TextVectorizer) -> sparse.csr_matrix:
    """Situation features: n-grams of the conversation (or of one message), then its cue counts.

    By grouped cross-validation on the bank (near-copies purged), the embeddings lowered this decision's
    F1 (0.858 against 0.884 with n-grams alone: they carry the topic, which n-grams carry too, but not
    whose it is); the cue counts raised it to 0.895. Neither needs a model call, so every earlier turn of
    a conversation can be judged again at no cost.
    """
    texts = list(texts)
    return hstack_rows([vectorizer.transform(texts), cue_matrix(texts)])


_SENTENCE_BREAK = re.compile(r"(?<=[.?!])\s+|\s*\n\s*")
SENTENCE_WORDS = 3
"""Words a part of a message needs to count as a sentence of its own ("ok.", "lol" do not)."""


def message_sentences(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """The sentences of each text (split at ``.?!`` and line breaks), and the index of the text each belongs to.

    A regular expression, not a sentence splitter: user messages are short and informal, and the split only
    bounds where a situation may be told.
    """
    parts: list[str] = []
    owners: list[int] = []
    for index, text in enumerate(texts):
        pieces = [p for p in _SENTENCE_BREAK.split(text) if len(p.split()) >= SENTENCE_WORDS]
        if len(pieces) > 1:
            parts.extend(pieces)
            owners.extend([index] * len(pieces))
    return parts, owners


PAIR_FEATURES = (
    "sentence_sim",
    "paragraph_sim",
    "chunk_sim",
    "heading_sim",
    "context_sentence_sim",
    "context_paragraph_sim",
    "sentence_sim_gap",
    "paragraph_sim_gap",
    "sentence_sim_rank",
    "bm25",
    "context_bm25",
    "heading_bm25",
    "section_prob",
    "section_prob_is_max",
    "kind_prob",
    "named_reference",
    "is_list_item",
    "is_lead_in",
    "has_label",
    "position",
    "first_in_section",
    "log_length",
    "situation_sim",
    "is_situation_bullet",
    "is_article",
    "neighbour_vote",
    "neighbour_section_vote",
    "neighbour_similarity",
    "neighbour_vote_x_similarity",
    "neighbour_section_vote_x_similarity",
)
"""Names of the ranker's features, column by column (the eval report and the tests use them)."""


@dataclass(frozen=True)
class Situation:
    """The lawyer bullets whose situation is the user's, as table rows and vectors."""

    rows: frozenset[int] = frozenset()
    vectors: np.ndarray | None = None


def _rank(values: np.ndarray) -> np.ndarray:
    """0 for the highest value, rising to 1 for the lowest."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values))
    return ranks / max(len(values) - 1, 1)


def pair_matrix(
    table: SentenceTable,
    view: QueryView,
    rows: np.ndarray,
    section_probs: np.ndarray,
    situation: Situation,
    bm25: np.ndarray,
    context_bm25: np.ndarray,
    heading_bm25: np.ndarray,
    votes: Votes,
) -> np.ndarray:
    """Pair features (columns as in :data:`PAIR_FEATURES`) of the candidate ``rows`` for one question.

    ``section_probs`` is the section decision's probability for every section of the table; ``bm25``,
    ``context_bm25`` (per sentence) and ``heading_bm25`` (per section) are the question's lexical scores;
    ``votes`` what the bank's nearest questions say.
    """
    sections = table.section_of[rows]
    sentence_sim = table.vectors[rows] @ view.vector
    paragraph_sim = table.paragraph_vectors[rows] @ view.vector
    top_bm25 = max(float(bm25.max()), 1e-9)
    top_context_bm25 = max(float(context_bm25.max()), 1e-9)
    kind_probs = np.array([section_probs[table.section_kind_masks[kind]].sum() for kind in table.kinds])
    named = np.array(
        [_names(s.heading, s.kind, view.statute_sections, view.treaty_articles) for s in table.sections], dtype=float
    )
    if situation.vectors is not None and len(situation.vectors):
        situation_sim = (table.vectors[rows] @ situation.vectors.T).max(axis=1)
    else:
        situation_sim = np.zeros(len(rows))
    static = table.static_features[rows]
    columns = [
        sentence_sim,
        paragraph_sim,
        table.chunk_vectors[table.chunk_of[rows]] @ view.vector,
        table.heading_vectors[sections] @ view.vector,
        table.vectors[rows] @ view.context_vector,
        table.paragraph_vectors[rows] @ view.context_vector,
        sentence_sim - sentence_sim.max(),
        paragraph_sim - paragraph_sim.max(),
        _rank(sentence_sim),
        bm25[rows] / top_bm25,
        context_bm25[rows] / top_context_bm25,
        heading_bm25[sections],
        section_probs[sections],
        (section_probs[sections] >= section_probs.max()).astype(float),
        kind_probs[table.sentence_kind[rows]],
        named[sections],
        static[:, 0],
        static[:, 1],
        static[:, 2],
        static[:, 3],
        static[:, 4],
        static[:, 5],
        situation_sim,
        np.isin(rows, list(situation.rows)).astype(float),
        static[:, 6],
    ]
    vote = votes.rows[rows]
    section_vote = votes.sections[sections]
    columns += [
        vote,
        section_vote,
        np.full(len(rows), votes.nearest_covered),
        vote * votes.nearest_covered,
        section_vote * votes.nearest_covered,
    ]
    return np.column_stack(columns)


def _names(heading: str, kind: str, statute: tuple[str, ...], treaty: tuple[str, ...]) -> bool:
    """Whether the question cites this section by number ("§ 107", "Article 11")."""
    if kind == "statute":
        return any(heading.lower().startswith(f"§ {n}.") for n in statute)
    if kind == "treaty":
        return any(heading.startswith(f"Article {n}.") for n in treaty)
    return False
