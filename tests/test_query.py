from __future__ import annotations

from collections import Counter

import pytest

from assistant.chunking import chunk_corpus
from assistant.corpus import Corpus
from assistant.query import QueryPreparer, translate
from assistant.tokens import words


@pytest.fixture(scope="module")
def preparer(corpus: Corpus) -> QueryPreparer:
    vocabulary = Counter(w for doc in chunk_corpus(corpus, 700) for w in words(doc.page_content) if w.isalpha())
    return QueryPreparer(vocabulary)


@pytest.mark.parametrize(
    ("typo", "fixed"), [("seperation", "separation"), ("contnet", "content"), ("licnese", "license")]
)
def test_typos_are_mended_against_the_corpus_vocabulary(preparer: QueryPreparer, typo: str, fixed: str) -> None:
    assert preparer.correct(typo) == fixed


def test_known_and_unknown_words_are_left_alone(preparer: QueryPreparer) -> None:
    assert preparer.correct("spotify") == "spotify"
    assert preparer.correct("zzzzqx") == "zzzzqx"


def test_mended_words_are_appended_to_the_question(preparer: QueryPreparer) -> None:
    assert preparer.prepare("is stem seperation legal").text.endswith("separation")


def test_foreign_words_gain_english_equivalents() -> None:
    assert "derivative work" in translate("Qu'est-ce qu'une œuvre dérivée selon la loi américaine ?")
    assert "risky" in translate("Un DJ set privato con acapella estratte è rischioso?")
    assert "technological measures" in translate("¿Qué dice el Tratado de la OMPI sobre las medidas tecnológicas?")


@pytest.mark.parametrize(
    ("question", "sections", "articles"),
    [
        ("What does § 107 say?", ("107",), ()),
        ("Explain 17 U.S.C. 114(b) for remixes", ("114",), ()),
        ("What does Article 11 of the WIPO treaty require?", (), ("11",)),
        ("Is stem separation legal?", (), ()),
    ],
)
def test_explicit_references_are_read(
    preparer: QueryPreparer, question: str, sections: tuple[str, ...], articles: tuple[str, ...]
) -> None:
    prepared = preparer.prepare(question)
    assert prepared.statute_sections == sections
    assert prepared.treaty_articles == articles
