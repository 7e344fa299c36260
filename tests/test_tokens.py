from __future__ import annotations

from assistant.tokens import STOPWORDS, content_tokens, stem, words


def test_words_are_lower_case_with_straight_apostrophes() -> None:
    assert words("Don’t STOP") == ["don't", "stop"]


def test_inflections_meet_as_one_stem() -> None:
    assert stem("released") == stem("releases") == stem("releasing") == stem("release")
    assert stem("stems") == stem("stem")


def test_stop_words_and_the_article_as_a_document_are_no_search_terms() -> None:
    assert content_tokens("What does the article say about useful articles?") == ["use"]
    assert "what" in STOPWORDS and "stem" not in STOPWORDS
