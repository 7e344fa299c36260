from __future__ import annotations

import pytest

from assistant.chunking import chunk_corpus
from assistant.corpus import Corpus
from assistant.query import QueryPreparer, content_tokens, stem, translate
from assistant.retrieval import vocabulary


@pytest.fixture(scope="module")
def preparer(corpus: Corpus) -> QueryPreparer:
    return QueryPreparer(vocabulary(chunk_corpus(corpus, 700)))


@pytest.mark.parametrize(
    ("typo", "fixed"), [("seperation", "separation"), ("contnet", "content"), ("licnese", "license")]
)
def test_typos_are_mended_against_the_corpus_vocabulary(preparer: QueryPreparer, typo: str, fixed: str) -> None:
    assert preparer.correct(typo) == fixed


def test_known_words_are_left_alone(preparer: QueryPreparer) -> None:
    assert preparer.correct("spotify") == "spotify"
    assert preparer.correct("zzzzqx") == "zzzzqx"


def test_foreign_words_gain_english_equivalents() -> None:
    assert "derivative work" in translate("Qu'est-ce qu'une œuvre dérivée selon la loi américaine ?")
    assert "risky" in translate("Un DJ set privato con acapella estratte è rischioso?")
    assert "technological measures" in translate("¿Qué dice el Tratado de la OMPI sobre las medidas tecnológicas?")


@pytest.mark.parametrize(
    ("question", "statute", "treaty", "sections"),
    [
        ("What does § 107 say?", True, False, ("107",)),
        ("Explain 17 U.S.C. 114(b) for remixes", True, False, ("114",)),
        ("What does Article 11 of the WIPO treaty require?", False, True, ()),
        ("Is stem separation legal?", False, False, ()),
    ],
)
def test_questions_about_the_law_are_recognised(
    preparer: QueryPreparer, question: str, statute: bool, treaty: bool, sections: tuple[str, ...]
) -> None:
    prepared = preparer.prepare(question)
    assert prepared.wants_statute is statute
    assert prepared.wants_treaty is treaty
    assert prepared.statute_sections == sections


@pytest.mark.parametrize(
    ("question", "about_sources"),
    [
        ("Is there a link to the WIPO treaty text?", True),
        ("Which piece of US law is the article based on?", True),
        ("Does the article give a URL for the copyright statute?", True),
        ("Where could I read the actual statute?", True),
        ("Where can I find official stems released by artists?", False),
        ("Should I document the source of my stems?", False),
        ("I use an online vocal remover. Do I need to read its terms?", False),
    ],
)
def test_questions_about_the_articles_sources_are_recognised(
    preparer: QueryPreparer, question: str, about_sources: bool
) -> None:
    assert preparer.prepare(question).wants_sources is about_sources


def test_the_article_named_as_the_document_is_no_search_term() -> None:
    # "What does the article say about…" must not match the statute's "useful article".
    assert "articl" not in content_tokens("What does the article say about useful articles?")
    assert content_tokens("What does the article say about useful articles?") == ["useful"]


def test_treaty_article_numbers_are_read(preparer: QueryPreparer) -> None:
    assert preparer.prepare("What does Article 11 of the WIPO treaty require?").treaty_articles == ("11",)


def test_stemming_conflates_inflections() -> None:
    assert stem("released") == stem("release") == stem("releasing")
    assert stem("separation") == stem("separated")
    assert content_tokens("The stems are separated") == ["stem", stem("separated")]
