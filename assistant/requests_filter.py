"""Requests aimed at the assistant inside a message, found by a classifier fitted on labelled messages.

The default (``ASSISTANT_REQUEST_FILTER=learned``); ``rules`` uses the rule list instead. How each does on the
injection suite and the dev set is in ``docs/security.md``.

A message is cut into pieces: its lines, each line's sentences (``sentencex``, Wikimedia's language-aware
segmenter, which knows the full stops of CJK, Arabic and Latin scripts and common abbreviations) and, inside a
sentence, the clause a colon opens ("then answer this: is a remix a derivative work?"). Each piece is then
either **aimed at the assistant** (an attempt to change its rules, persona or output, to drop its disclaimer,
notices or citations, to reveal its instructions, or chat-markup noise) or **part of the user's question**
(the question, the user's situation, a greeting, an imperative phrasing of a real question).

The classifier is a logistic regression on character n-gram TF-IDF (``char_wb``; it reads any script and
survives typos and leetspeak). It is fitted on ``assistant/data/requests/*.jsonl``: messages written from the
corpus alone, in independent voices, with every piece labelled; none shares a question with the eval sets or
the injection suite. Its threshold is fitted by grouped cross-validation (whole messages per fold) to make the
most messages wholly right: every request dropped and every part of the question kept. Character n-grams
beat sentence embeddings and their combination in that CV (pieces' ROC AUC 0.977 against 0.955 and 0.977,
and 0.971 against 0.946 when fitted on one author's messages and tested on the other's), and cost no
embedding per piece when answering.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import sentencex
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from assistant.errors import DatasetError
from assistant.frozen import Logistic, Tfidf, freeze

Label = Literal["assistant", "question"]
_CLAUSE = re.compile(r"(?<=:)\s+")
"""Where a colon opens a new clause inside a sentence: after the colon, at the whitespace that follows it."""
THRESHOLDS = tuple(round(t, 2) for t in np.arange(0.3, 0.91, 0.05))
"""Candidate thresholds on the probability that a piece is aimed at the assistant (the fit picks one by CV)."""


class Segment(BaseModel):
    """A labelled piece of a message, copied verbatim from it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    text: str = Field(min_length=1)
    label: Label


class LabelledMessage(BaseModel):
    """A message as typed, cut into labelled pieces that cover it in order."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str
    message: str = Field(min_length=1)
    segments: tuple[Segment, ...] = Field(min_length=1)

    @property
    def author(self) -> str:
        """Who wrote it: the id's prefix."""
        return self.id.split("-", 1)[0]

    def char_labels(self) -> list[Label | None]:
        """The label of every character of the message (None for the whitespace between segments)."""
        labels: list[Label | None] = [None] * len(self.message)
        position = 0
        for segment in self.segments:
            start = self.message.find(segment.text, position)
            if start < 0:
                raise ValueError(f"segment {segment.text[:40]!r} is not in the message after position {position}")
            labels[start : start + len(segment.text)] = [segment.label] * len(segment.text)
            position = start + len(segment.text)
        uncovered = [c for c, label in zip(self.message, labels, strict=True) if label is None and not c.isspace()]
        if uncovered:
            raise ValueError(f"the segments leave {''.join(uncovered)[:40]!r} unlabelled")
        return labels


def data_dir() -> Path:
    """The labelled messages shipped with the package."""
    return Path(str(resources.files("assistant").joinpath("data/requests")))


def load_messages(directory: Path | None = None) -> list[LabelledMessage]:
    """Every labelled message, checked: pieces verbatim, in order, covering the message; ids unique."""
    directory = directory or data_dir()
    files = sorted(directory.glob("*.jsonl"))
    if not files:
        raise DatasetError(f"No labelled messages (*.jsonl) in {directory}; restore assistant/data/requests/.")
    messages: list[LabelledMessage] = []
    seen: set[str] = set()
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                message = LabelledMessage.model_validate_json(line)
                message.char_labels()
            except ValidationError as error:
                first = error.errors()[0]
                where = ".".join(str(part) for part in first["loc"])
                raise DatasetError(f"{path.name} line {number}: {where}: {first['msg']}.") from None
            except ValueError as error:
                raise DatasetError(f"{path.name} line {number}: {error}.") from None
            if message.id in seen:
                raise DatasetError(f"{path.name} line {number}: id '{message.id}' is used twice.")
            seen.add(message.id)
            messages.append(message)
    return messages


def fingerprint(messages: Iterable[LabelledMessage]) -> str:
    """A hash of the labelled data (what a fitted filter depends on)."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(message.model_dump_json().encode())
    return digest.hexdigest()[:16]


def pieces(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` of every piece of ``text``: lines, their sentences, clauses a colon opens."""
    spans: list[tuple[int, int]] = []
    for line in re.finditer(r"[^\n]+", text):
        position = line.start()
        for sentence in sentencex.segment("en", line.group(0)):
            start = text.find(sentence, position, line.end())
            if start < 0:  # the segmenter returns the line's own text; never expected, but never lose a word
                start, sentence = position, text[position : line.end()]
            end = start + len(sentence)
            cut = start
            for match in _CLAUSE.finditer(text, start, end):
                spans.append((cut, match.start()))
                cut = match.end()
            spans.append((cut, end))
            position = end
    return [(start, end) for start, end in spans if text[start:end].strip()]


def labelled_pieces(messages: Sequence[LabelledMessage]) -> tuple[list[str], np.ndarray, list[str]]:
    """Every message's pieces as :func:`pieces` cuts them, each labelled by the majority of its characters."""
    texts: list[str] = []
    targets: list[bool] = []
    groups: list[str] = []
    for message in messages:
        labels = message.char_labels()
        for start, end in pieces(message.message):
            counted = [labels[i] for i in range(start, end) if labels[i] is not None]
            texts.append(message.message[start:end].strip())
            targets.append(counted.count("assistant") > counted.count("question"))
            groups.append(message.id)
    return texts, np.array(targets), groups


@dataclass
class RequestFilter:
    """The fitted classifier and its threshold; ``split`` keeps a message's question and drops the rest."""

    vectorizer: Tfidf
    model: Logistic
    threshold: float
    report: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectorizer = freeze(self.vectorizer)
        self.model = freeze(self.model)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Probability that each piece is aimed at the assistant."""
        if not texts:
            return np.zeros(0)
        return self.model.positive(self.vectorizer.transform(texts))

    def split(self, text: str) -> tuple[str, bool]:
        """The message without its pieces aimed at the assistant (joined by spaces), and whether there were any."""
        spans = pieces(text)
        scores = self.scores([text[start:end] for start, end in spans])
        kept = [text[start:end].strip() for (start, end), score in zip(spans, scores, strict=True)]
        dropped = scores >= self.threshold
        return " ".join(piece for piece, drop in zip(kept, dropped, strict=True) if not drop), bool(dropped.any())


def _fit(texts: Sequence[str], targets: np.ndarray, ngrams: tuple[int, int], c: float) -> RequestFilter:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=ngrams, min_df=2, sublinear_tf=True)
    matrix = vectorizer.fit_transform(list(texts))
    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced").fit(matrix, targets)
    return RequestFilter(vectorizer, model, 0.5)


def _messages_right(scores: np.ndarray, targets: np.ndarray, groups: Sequence[str], threshold: float) -> float:
    right: dict[str, bool] = {}
    for score, target, group in zip(scores, targets, groups, strict=True):
        right[group] = right.get(group, True) and bool(score >= threshold) == bool(target)
    return float(np.mean(list(right.values())))


def _question_lost(scores: np.ndarray, targets: np.ndarray, groups: Sequence[str], threshold: float) -> float:
    """Share of messages that lose some piece of their question."""
    lost = {g for score, target, g in zip(scores, targets, groups, strict=True) if not target and score >= threshold}
    return len(lost) / len(set(groups))


def plain_messages(items: Iterable[tuple[str, str]]) -> list[LabelledMessage]:
    """``(id, message)`` pairs with nothing aimed at the assistant (the question bank's), as labelled messages."""
    return [
        LabelledMessage(id=item_id, message=text, segments=(Segment(text=text, label="question"),))
        for item_id, text in items
        if text.strip()
    ]


def fit_request_filter(
    messages: Sequence[LabelledMessage],
    folds: int,
    ngrams: tuple[int, int],
    c: float,
    plain: Sequence[LabelledMessage] = (),
    jobs: int = 1,
) -> RequestFilter:
    """Fit on every labelled message, with the threshold and the figures from grouped cross-validation.

    ``plain``: more messages with nothing aimed at the assistant (the question bank's, which show how people
    ask); they are in every fold's training and testing like the rest, and in the training of the cross-author
    figure, which tests on each author of ``messages`` in turn.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import GroupKFold

    texts, targets, groups = labelled_pieces([*messages, *plain])
    fold_tests = []
    for _, fold in GroupKFold(n_splits=folds).split(texts, targets, groups):
        test = np.zeros(len(texts), dtype=bool)
        test[fold] = True
        fold_tests.append(test)
    authors = sorted({m.author for m in messages} - {m.author for m in plain})
    by_author = np.array([g.split("-", 1)[0] for g in groups])
    # The cross-author figure: fitted on the other authors' messages, tested on one author's.
    author_tests = [by_author == author for author in authors] if len(authors) > 1 else []
    # Every model is independent of the others: the folds', the authors' and the final one (tested on nothing)
    # are fitted at once, ``jobs`` processes at a time.
    fitted_models: list[RequestFilter] = list(
        Parallel(n_jobs=jobs, prefer="processes")(
            delayed(_fit)([t for t, f in zip(texts, test, strict=True) if not f], targets[~test], ngrams, c)
            for test in [*fold_tests, *author_tests, np.zeros(len(texts), dtype=bool)]
        )
    )
    *held_out, final = fitted_models
    out_of_fold = np.zeros(len(texts))
    for test, fitted in zip(fold_tests, held_out, strict=False):
        out_of_fold[test] = fitted.scores([t for t, f in zip(texts, test, strict=True) if f])
    # Balanced: the share of plain messages left whole and the share of labelled messages made wholly right
    # count alike, whatever the sizes of the two sets (the bank's plain messages outnumber the labelled ones).
    plain_ids = {m.id for m in plain}
    plain_rows = np.array([g in plain_ids for g in groups])

    def balanced(threshold: float) -> float:
        parts = [
            _messages_right(
                out_of_fold[rows], targets[rows], [g for g, r in zip(groups, rows, strict=True) if r], threshold
            )
            for rows in (plain_rows, ~plain_rows)
            if rows.any()
        ]
        return float(np.mean(parts))

    threshold = max(THRESHOLDS, key=lambda t: (balanced(t), t))
    cross: dict[str, float] = {}
    if author_tests:
        tested = np.isin(by_author, authors)
        held = np.zeros(len(texts))
        for test, fitted in zip(author_tests, held_out[len(fold_tests) :], strict=True):
            held[test] = fitted.scores([t for t, f in zip(texts, test, strict=True) if f])
        kept = [g for g, t in zip(groups, tested, strict=True) if t]
        cross = {
            "messages_right": round(_messages_right(held[tested], targets[tested], kept, threshold), 4),
            "question_lost": round(_question_lost(held[tested], targets[tested], kept, threshold), 4),
        }
    final.threshold = float(threshold)
    labelled = ~plain_rows
    final.report = {
        "messages": len(messages),
        "plain_messages": len(plain),
        "plain_with_a_piece_dropped": round(
            _question_lost(
                out_of_fold[plain_rows], targets[plain_rows], [g for g in groups if g in plain_ids], threshold
            )
            if len(plain)
            else 0.0,
            4,
        ),
        "pieces": len(texts),
        "aimed_at_assistant": int(targets.sum()),
        "threshold": float(threshold),
        "messages_right": round(
            _messages_right(
                out_of_fold[labelled], targets[labelled], [g for g in groups if g not in plain_ids], threshold
            ),
            4,
        ),
        "question_lost": round(
            _question_lost(
                out_of_fold[labelled], targets[labelled], [g for g in groups if g not in plain_ids], threshold
            ),
            4,
        ),
        "requests_kept": round(float((out_of_fold[targets] < threshold).mean()), 4),
        "cross_author": cross,
        "data_fingerprint": fingerprint(messages),
    }
    return final
