"""The verifier's stated tests, one by one, and the support model fitted on the labelled pairs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from langchain_core.embeddings import Embeddings

from assistant.corpus import Corpus
from assistant.decisions.support import SUPPORT_C, _fit, ensure_support, fit_support, load_pairs, similarities
from assistant.embeddings import make_embeddings
from assistant.frozen import Logistic, TokenCounts
from assistant.settings import Settings
from assistant.verify import (
    SupportModel,
    drops_hedge,
    hedged,
    locate,
    plain_sentence,
    repeats_a_quote,
    support_matrix,
)

CORPUS_URL = "https://www.copyright.gov/title17/92chap1.html#107"


@pytest.fixture(scope="module")
def embeddings(settings: Settings) -> Embeddings:
    return make_embeddings(settings)


@pytest.mark.parametrize(
    "text",
    [
        "<!-- hidden --> Stems are fine.",
        "Stems are fine.<details><summary>x</summary>y</details>",
        'Stems are <span style="font-size:0">not</span> fine.',
        "Stems &lt;b&gt; fine.",
        "<script>alert(1)</script>",
    ],
)
def test_markup_drops_the_sentence(text: str) -> None:
    assert plain_sentence(text, frozenset()) is None


def test_links_and_images_are_stripped_unless_corpus_urls() -> None:
    allowed = frozenset({CORPUS_URL})
    text = f"See [fair use]({CORPUS_URL}) and [this](https://evil.example/x) ![i](https://evil.example/p.png) now."
    assert plain_sentence(text, allowed) == f"See [fair use]({CORPUS_URL}) and this now."
    assert plain_sentence("Visit https://evil.example/x today.", allowed) == "Visit today."
    assert plain_sentence("Fair use [1][2] applies [3].", allowed) == "Fair use applies."
    assert plain_sentence("\u200bZero\u200b width.", allowed) == "Zero width."


def test_quotes_are_exact_except_for_white_space() -> None:
    passage = "The output is arguably a derivative work.\nIt is derived from the original."
    assert locate("arguably a derivative work. It is derived", passage) is not None
    assert locate("arguably a derivative  work", passage) == (14, 40)
    assert locate("arguably a derivative Work", passage) is None
    assert locate("is a derivative work", passage) is None
    assert locate("", passage) is None


def test_hedges_must_be_kept() -> None:
    quote = "The output of a stem separator is arguably a derivative work."
    assert hedged(quote)
    assert drops_hedge("The output of a stem separator is a derivative work.", [quote])
    assert not drops_hedge("There is a case that a separated stem is a derivative work.", [quote])
    assert not drops_hedge("Stems come from recordings.", ["Stems come from recordings."])


def test_a_word_for_word_repeat_is_recognised() -> None:
    quote = "Reproduction. Processing a recording requires a copy. Even a temporary copy counts."
    assert repeats_a_quote("Processing a recording requires a copy.", [quote])
    assert repeats_a_quote("“Even a temporary copy counts”", [quote])
    assert not repeats_a_quote("Processing a recording requires no copy.", [quote])


def test_pairs_are_checked_against_the_corpus(corpus: Corpus) -> None:
    pairs = load_pairs(corpus)
    assert len(pairs) >= 500 and len({p.author for p in pairs}) >= 3
    assert {p.supported for p in pairs} == {True, False}


def test_the_support_model_is_fitted_for_its_precision(corpus: Corpus, embeddings: Embeddings, tmp_path: Path) -> None:
    pairs = load_pairs(corpus)
    model = fit_support(pairs, embeddings.embed_documents, 0.95)
    report = model.report
    assert report["precision"] >= 0.95 and report["recall"] > 0  # the threshold keeps something, at its precision
    assert 0.5 < report["auc"] <= 1.0 and report["pairs"] == len(pairs)
    stored = ensure_support(tmp_path, corpus, embeddings.embed_documents, 0.95)  # fits again, and stores
    assert stored.threshold == model.threshold  # deterministic
    assert (next(tmp_path.iterdir()) / "report.json").exists()
    assert ensure_support(tmp_path, corpus, embeddings.embed_documents, 0.95).report == stored.report  # loaded


def test_the_stored_support_model_is_frozen_and_loads_without_scikit_learn(
    corpus: Corpus, embeddings: Embeddings, tmp_path: Path
) -> None:
    pairs = load_pairs(corpus)
    similarity = similarities(pairs, embeddings.embed_documents)
    vectorizer, classifier = _fit(pairs, similarity, SUPPORT_C)  # scikit-learn's fitted objects
    model = SupportModel(vectorizer, classifier, threshold=0.5)
    assert isinstance(model.vectorizer, TokenCounts) and isinstance(model.classifier, Logistic)
    sentences, quotes = [p.sentence for p in pairs], [[p.quote] for p in pairs]
    expected = classifier.predict_proba(support_matrix(sentences, quotes, similarity, vectorizer))[:, 1]
    assert np.allclose(model.probabilities(sentences, quotes, similarity), expected, rtol=0, atol=1e-15)

    ensure_support(tmp_path, corpus, embeddings.embed_documents, 0.95)  # fits and stores
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys
                from pathlib import Path
                from assistant.corpus import load_corpus
                from assistant.decisions.support import ensure_support

                def no_embedding(texts):
                    raise AssertionError("a stored model is loaded, not fitted")

                model = ensure_support(Path(sys.argv[1]), load_corpus(Path(sys.argv[2])), no_embedding, 0.95)
                print(type(model.classifier).__name__, "sklearn" in sys.modules, "joblib" in sys.modules)
                """
            ),
            str(tmp_path),
            str(corpus.directory),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["Logistic", "False", "False"]
