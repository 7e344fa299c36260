"""The support test's model, fitted on labelled sentence-and-quote pairs.

``assistant/data/support/*.jsonl`` holds sentences an assistant might write, each with the exact corpus quote
it cites and a label: supported, or not (hedge dropped, overstated, contradicted, a detail swapped, a claim
added, …). Each file is one author's, written from the corpus alone. The model is a logistic regression on
the verifier's measures (:func:`assistant.verify.support_matrix`); its threshold is the lowest
whose out-of-fold precision (folds by author) reaches ``support_precision``. The report gives precision and
recall of the whole verifier (the threshold and the hedge test together) at that point.

Fitting takes seconds (one embedding per sentence and quote); the result is kept beside the index build,
keyed by the pairs, the settings and scikit-learn's version, and fitted only when a generative composer is used.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.corpus import Corpus
from assistant.errors import AssistantError
from assistant.verify import SupportModel, drops_hedge, novel_word_vectorizer, novel_words, support_matrix

if TYPE_CHECKING:  # scikit-learn fits the model; the stored one is frozen and loads without it
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

SUPPORT_VERSION = 3
"""3: stored frozen, as a plain pickle (2 was scikit-learn's objects in joblib's file)."""
SUPPORT_FILE = "support.pkl"
SUPPORT_C = 1.0
"""Inverse regularisation of the support model: scikit-learn's default. Of 0.1, 0.3 and 1, it gave the highest
out-of-fold AUC on the labelled pairs (0.83 against 0.76 and 0.80, folds by author)."""
Embed = Callable[[list[str]], list[list[float]]]


@dataclass(frozen=True)
class SupportPair:
    """One labelled pair: a sentence and the exact quote it cites."""

    id: str
    author: str
    source: str
    quote: str
    sentence: str
    supported: bool
    kind: str


def load_pairs(corpus: Corpus | None = None) -> list[SupportPair]:
    """Every labelled pair; with a corpus, each quote is checked to be an exact slice of its file."""
    folder = resources.files("assistant").joinpath("data/support")
    pairs: list[SupportPair] = []
    texts: dict[str, str] = {}
    if corpus is not None:
        texts = {Path(s.text_file).name: corpus.text_of(s.id) for s in [corpus.article, *corpus.sources] if s.text_file}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".jsonl"):
            continue
        for number, line in enumerate(entry.read_text("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            record = json.loads(line)
            pair = SupportPair(
                id=record["id"],
                author=record["author"],
                source=record["source"],
                quote=record["quote"],
                sentence=record["sentence"],
                supported=record["label"] == "supported",
                kind=record["kind"],
            )
            if texts and pair.quote not in texts.get(pair.source, ""):
                raise AssistantError(f"{entry.name}:{number}: the quote of '{pair.id}' is not in {pair.source}.")
            pairs.append(pair)
    return pairs


def pairs_fingerprint(pairs: list[SupportPair]) -> str:
    """A hash of every pair."""
    return hashlib.sha256(json.dumps([asdict(p) for p in pairs], sort_keys=True).encode()).hexdigest()


def similarities(pairs: list[SupportPair], embed: Embed) -> np.ndarray:
    """Embedding cosine similarity of each pair's sentence and quote."""
    vectors = np.asarray(embed([p.sentence for p in pairs] + [p.quote for p in pairs]), dtype=float)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    half = len(pairs)
    return np.asarray(np.sum(vectors[:half] * vectors[half:], axis=1))


def _precision_recall(kept: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    shown = int(kept.sum())
    precision = float((kept & truth).sum() / shown) if shown else 1.0
    recall = float((kept & truth).sum() / max(int(truth.sum()), 1))
    return precision, recall


def _fit(pairs: list[SupportPair], similarity: np.ndarray, c: float) -> tuple[CountVectorizer, LogisticRegression]:
    from sklearn.linear_model import LogisticRegression

    sentences, quotes = [p.sentence for p in pairs], [[p.quote] for p in pairs]
    vectorizer = novel_word_vectorizer().fit([novel_words(t, q) for t, q in zip(sentences, quotes, strict=True)])
    features = support_matrix(sentences, quotes, similarity, vectorizer)
    classifier = LogisticRegression(C=c, max_iter=2000).fit(features, [p.supported for p in pairs])
    return vectorizer, classifier


def fit_support(pairs: list[SupportPair], embed: Embed, precision: float, folds: int = 5) -> SupportModel:
    """Fit the support model and its threshold by cross-validation over authors; report P/R at that threshold."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold

    truth = np.array([p.supported for p in pairs])
    authors = np.array([p.author for p in pairs])
    similarity = similarities(pairs, embed)
    out_of_fold = np.zeros(len(pairs))
    splits = min(folds, len(set(authors)))
    for train, test in GroupKFold(n_splits=splits).split(similarity, truth, authors):
        model = SupportModel(*_fit([pairs[i] for i in train], similarity[train], SUPPORT_C), threshold=0.0)
        held = [pairs[i] for i in test]
        out_of_fold[test] = model.probabilities([p.sentence for p in held], [[p.quote] for p in held], similarity[test])
    hedges_kept = np.array([not drops_hedge(p.sentence, [p.quote]) for p in pairs])
    threshold = 1.0
    for candidate in np.unique(out_of_fold):
        p, _ = _precision_recall((out_of_fold >= candidate) & hedges_kept, truth)
        if p >= precision:
            threshold = float(candidate)
            break
    kept = (out_of_fold >= threshold) & hedges_kept
    verifier_p, verifier_r = _precision_recall(kept, truth)
    hedge_p, hedge_r = _precision_recall(hedges_kept, truth)
    at_half = (out_of_fold >= 0.5) & hedges_kept
    half_p, half_r = _precision_recall(at_half, truth)
    report = {
        "pairs": len(pairs),
        "supported": int(truth.sum()),
        "authors": len(set(authors)),
        "folds": splits,
        "auc": float(roc_auc_score(truth, out_of_fold)),
        "threshold": threshold,
        "precision": verifier_p,
        "recall": verifier_r,
        "precision_at_0.5": half_p,
        "recall_at_0.5": half_r,
        "hedge_rule_precision": hedge_p,
        "hedge_rule_recall": hedge_r,
        "unsupported_kept_by_kind": {
            kind: int(sum(1 for p, k in zip(pairs, kept, strict=True) if k and not p.supported and p.kind == kind))
            for kind in sorted({p.kind for p in pairs if not p.supported})
        },
        "target_precision": precision,
    }
    vectorizer, classifier = _fit(pairs, similarity, SUPPORT_C)
    return SupportModel(vectorizer, classifier, threshold, report)


def support_key(pairs: list[SupportPair], precision: float) -> str:
    """What a fitted support model depends on, as a short hash."""
    hedges = resources.files("assistant").joinpath("data/hedges.yaml").read_bytes()
    material = {
        "pairs": pairs_fingerprint(pairs),
        "hedges": hashlib.sha256(hedges).hexdigest(),
        "version": SUPPORT_VERSION,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def ensure_support(folder: Path, corpus: Corpus, embed: Embed, precision: float) -> SupportModel:
    """The fitted support model from ``folder/<key>/``, fitting and storing it first when missing."""
    pairs = load_pairs(corpus)
    path = folder / support_key(pairs, precision) / SUPPORT_FILE
    if path.exists():
        with path.open("rb") as handle:
            stored: SupportModel = pickle.load(handle)  # written by this package, beside the index it built
        return stored
    model = fit_support(pairs, embed, precision)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{uuid.uuid4().hex}.tmp")
    with temporary.open("wb") as handle:
        pickle.dump(model, handle, protocol=5)
    (path.parent / "report.json").write_text(json.dumps(model.report, indent=2), "utf-8")
    os.replace(temporary, path)
    return model
