"""Fitted scikit-learn models reduced to the arrays their predictions read, so that serving never imports it.

scikit-learn fits every decision (:mod:`assistant.decisions.training`), and the fit stays its own. Serving only
multiplies: a logistic regression is ``features @ coef.T + intercept`` and a logistic or a softmax, a scaler
subtracts and divides, a TF-IDF vectoriser counts n-grams from a fixed vocabulary, boosted trees compare a
feature with a threshold per node. Importing scikit-learn to do that cost 0.9-1.6 s of every start (it imports
SciPy's statistics and pandas whatever is used; ``docs/performance.md``), a third of the start-up budget, for
arithmetic that takes a few lines. So each fitted model is frozen once fitted, into one of the classes below:
the same attribute names (``coef_``, ``vocabulary_``, ``idf_``...), the same arithmetic in the same order, and
nothing from scikit-learn. ``tests/test_frozen.py`` checks every frozen model's output against the original
model's on the project's own data and on hostile text, to the last bit where the operations are the same.

:func:`freeze` turns a fitted scikit-learn object into its frozen form; it imports scikit-learn lazily, since
only a fit has such an object to give it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.special import expit


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax in place, as ``sklearn.utils.extmath.softmax`` computes it."""
    scores -= np.max(scores, axis=1).reshape((-1, 1))
    np.exp(scores, out=scores)
    scores /= np.sum(scores, axis=1).reshape((-1, 1))
    return scores


def normalize_rows_l2(rows: sparse.csr_matrix) -> None:
    """Scale each row of a CSR matrix to unit length in place (rows of zeros stay zero).

    The squares are summed in storage order (``np.bincount`` adds sequentially), as scikit-learn's
    ``inplace_csr_row_normalize_l2`` does, so the results are the same to the bit.
    """
    counts = np.diff(rows.indptr)
    owner = np.repeat(np.arange(rows.shape[0]), counts)
    norms = np.sqrt(np.bincount(owner, weights=rows.data * rows.data, minlength=rows.shape[0]))
    norms[norms == 0.0] = 1.0
    rows.data /= norms[owner]


@dataclass
class Logistic:
    """A fitted logistic regression: binary (one row of ``coef_``) or multinomial."""

    coef_: np.ndarray
    intercept_: np.ndarray
    classes_: np.ndarray

    def decision_function(self, features: Any) -> np.ndarray:
        """``features @ coef.T + intercept``: one column (flattened) for a binary model, one per class else."""
        scores: np.ndarray = np.asarray(features @ self.coef_.T, dtype=np.float64) + self.intercept_
        return scores.reshape(-1) if scores.shape[1] == 1 else scores

    def predict_proba(self, features: Any) -> np.ndarray:
        """P(class) per row, columns in ``classes_`` order."""
        scores = self.decision_function(features)
        if scores.ndim == 1:
            positive = expit(scores)
            return np.stack([1 - positive, positive], axis=1)
        return softmax(scores)

    def positive(self, features: Any) -> np.ndarray:
        """P(the second class) per row of a binary model, as one product with the coefficients' one row."""
        scores = features @ self.coef_[0] + self.intercept_[0]
        return np.asarray(expit(np.asarray(scores, dtype=np.float64)).ravel())


@dataclass
class Scaler:
    """A fitted standard scaler (``None`` where it neither centres nor scales)."""

    mean_: np.ndarray | None
    scale_: np.ndarray | None

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Centred and scaled features (a new array)."""
        out = np.asarray(features, dtype=np.float64)
        if self.mean_ is not None:
            out = out - self.mean_
        if self.scale_ is not None:
            out = out / self.scale_
        return out


@dataclass
class ScaledLogistic:
    """A scaler then a logistic regression (the pipeline the logistic sentence ranker is fitted as)."""

    scaler: Scaler
    classifier: Logistic

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(class) per row."""
        return self.classifier.predict_proba(self.scaler.transform(features))

    def positive(self, features: np.ndarray) -> np.ndarray:
        """P(the second class) per row."""
        return self.classifier.positive(self.scaler.transform(features))


@dataclass
class Trees:
    """Gradient-boosted binary trees on numeric features: the baseline plus each tree's leaf, then the logistic.

    Each tree is the node table scikit-learn's predictor holds (feature, threshold, children, leaf value, where
    missing values go); rows walk down all together, one level per step.
    """

    baseline: float
    trees: list[np.ndarray]
    classes_: np.ndarray

    def raw(self, features: np.ndarray) -> np.ndarray:
        """The log-odds per row: the baseline plus the leaf each tree sends the row to, added tree by tree."""
        features = np.asarray(features, dtype=np.float64)
        rows = np.arange(features.shape[0])
        total = np.full(features.shape[0], self.baseline)
        for nodes in self.trees:
            at = np.zeros(features.shape[0], dtype=np.intp)
            while True:
                inner = nodes["is_leaf"][at] == 0
                if not inner.any():
                    break
                node = nodes[at[inner]]
                value = features[rows[inner], node["feature_idx"]]
                left = np.where(np.isnan(value), node["missing_go_to_left"] != 0, value <= node["num_threshold"])
                at[inner] = np.where(left, node["left"], node["right"])
            total += nodes["value"][at]
        return total

    def positive(self, features: np.ndarray) -> np.ndarray:
        """P(the second class) per row."""
        return np.asarray(expit(self.raw(features)))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """P(class) per row."""
        positive = self.positive(features)
        return np.stack([1 - positive, positive], axis=1)


def count_rows(documents: Iterable[Iterable[str]], vocabulary: dict[str, int], dtype: Any) -> sparse.csr_matrix:
    """How often each known token occurs in each document, columns sorted within each row (as scikit-learn counts)."""
    indices: list[int] = []
    values: list[int] = []
    indptr = [0]
    for tokens in documents:
        found: dict[int, int] = {}
        for token in tokens:
            column = vocabulary.get(token)
            if column is not None:
                found[column] = found.get(column, 0) + 1
        indices.extend(found)
        values.extend(found.values())
        indptr.append(len(indices))
    rows = sparse.csr_matrix(
        (np.asarray(values, dtype=dtype), np.asarray(indices, dtype=np.int32), np.asarray(indptr, np.int32)),
        shape=(len(indptr) - 1, len(vocabulary)),
    )
    rows.sort_indices()
    return rows


WHITE_SPACES = re.compile(r"\s\s+")
"""scikit-learn's own pattern for runs of white space, which character n-grams see as one space."""


@dataclass
class Tfidf:
    """A fitted TF-IDF vectoriser over words or characters.

    Only the options this project's vectorisers use are carried; :func:`freeze` refuses any other. The
    analysers are scikit-learn's, line for line: lowercasing, the token pattern and word n-grams joined by a
    space, or character n-grams inside white-space-padded words.
    """

    analyzer: str
    ngram_range: tuple[int, int]
    lowercase: bool
    token_pattern: str
    vocabulary_: dict[str, int]
    idf_: np.ndarray | None
    sublinear_tf: bool
    norm: str | None
    binary: bool

    def __post_init__(self) -> None:
        self._tokens = re.compile(self.token_pattern)

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "_tokens"}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def analyze(self, text: str) -> list[str]:
        """The n-grams of one text, as the fitted vectoriser's ``build_analyzer()`` gives them."""
        if self.lowercase:
            text = text.lower()
        low, high = self.ngram_range
        grams: list[str] = []
        if self.analyzer == "char_wb":
            for word in WHITE_SPACES.sub(" ", text).split():
                padded = f" {word} "
                for n in range(low, high + 1):
                    offset = 0
                    grams.append(padded[offset : offset + n])
                    while offset + n < len(padded):
                        offset += 1
                        grams.append(padded[offset : offset + n])
                    if offset == 0:  # a short word counts once
                        break
            return grams
        tokens = self._tokens.findall(text)
        if high == 1:
            return list(tokens)
        grams = list(tokens) if low == 1 else []
        for n in range(max(low, 2), min(high + 1, len(tokens) + 1)):
            grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        return grams

    def counts(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """Occurrences of each known n-gram per text, columns sorted within each row."""
        return count_rows((self.analyze(text) for text in texts), self.vocabulary_, np.float64)

    def transform(self, texts: Sequence[str]) -> sparse.csr_matrix:
        """The weighted rows, in the vectoriser's own order of steps: counts, log, idf, unit length."""
        rows = self.counts(texts)
        if self.binary:
            rows.data[:] = 1.0
        if self.sublinear_tf:
            np.log(rows.data, rows.data)
            rows.data += 1.0
        if self.idf_ is not None:
            rows.data *= self.idf_[rows.indices]
        if self.norm == "l2":
            normalize_rows_l2(rows)
        return rows


@dataclass
class TokenCounts:
    """A fitted count vectoriser whose analyser is a function (here: documents that are already lists of words).

    The counting is scikit-learn's ``CountVectorizer.transform``: each known token counted per document, columns
    sorted within each row, the vectoriser's dtype, every count set to 1 when ``binary``.
    """

    analyzer: Callable[[Any], Sequence[str]]
    vocabulary_: dict[str, int]
    binary: bool
    dtype: Any

    def transform(self, documents: Sequence[Any]) -> sparse.csr_matrix:
        """Rows of token counts (or presences), one per document."""
        rows = count_rows((self.analyzer(document) for document in documents), self.vocabulary_, self.dtype)
        if self.binary:
            rows.data.fill(1)
        return rows


def freeze(model: Any) -> Any:
    """The frozen form of a fitted scikit-learn model (a frozen one, or ``None``, is returned as it is).

    Raises ``TypeError`` for a model or an option this module does not reproduce, so that nothing is frozen
    into something that computes differently.
    """
    if model is None or isinstance(model, (Logistic, Scaler, ScaledLogistic, Trees, Tfidf, TokenCounts)):
        return model
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(model, LogisticRegression):
        return Logistic(np.array(model.coef_), np.array(model.intercept_), np.array(model.classes_))
    if isinstance(model, StandardScaler):
        return Scaler(
            np.array(model.mean_) if model.with_mean else None, np.array(model.scale_) if model.with_std else None
        )
    if isinstance(model, Pipeline) and len(model.steps) == 2:
        scaler, classifier = freeze(model.steps[0][1]), freeze(model.steps[1][1])
        if isinstance(scaler, Scaler) and isinstance(classifier, Logistic):
            return ScaledLogistic(scaler, classifier)
    numeric = getattr(model, "is_categorical_", None) is None or not np.any(model.is_categorical_)
    if isinstance(model, HistGradientBoostingClassifier) and len(model.classes_) == 2 and numeric:
        return Trees(
            float(np.asarray(model._baseline_prediction).ravel()[0]),
            [np.array(tree[0].nodes) for tree in model._predictors],
            np.array(model.classes_),
        )
    if isinstance(model, TfidfVectorizer) and _plain(model):
        return Tfidf(
            analyzer=model.analyzer,
            ngram_range=tuple(model.ngram_range),
            lowercase=bool(model.lowercase),
            token_pattern=model.token_pattern,
            vocabulary_={str(k): int(v) for k, v in model.vocabulary_.items()},
            idf_=np.array(model.idf_) if model.use_idf else None,
            sublinear_tf=bool(model.sublinear_tf),
            norm=model.norm,
            binary=bool(model.binary),
        )
    if type(model) is CountVectorizer and callable(model.analyzer) and model.input == "content":
        return TokenCounts(
            analyzer=model.analyzer,
            vocabulary_={str(k): int(v) for k, v in model.vocabulary_.items()},
            binary=bool(model.binary),
            dtype=np.dtype(model.dtype),
        )
    raise TypeError(f"{type(model).__name__} with these options has no frozen form; it would be served as fitted")


def _plain(vectorizer: Any) -> bool:
    """Whether a vectoriser uses only the options :class:`Tfidf` reproduces."""
    return (
        vectorizer.analyzer in ("word", "char_wb")
        and vectorizer.preprocessor is None
        and vectorizer.tokenizer is None
        and vectorizer.stop_words is None
        and not vectorizer.strip_accents
        and vectorizer.input == "content"
        and vectorizer.decode_error == "strict"
        and vectorizer.norm in ("l2", None)
        and np.dtype(vectorizer.dtype) == np.float64
    )
