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


def test_threads_stemming_at_once_get_the_same_stems_as_one_thread() -> None:
    # The server stems questions in several threads at once (the API's and the chat's); a stemmer shared
    # between them garbled words and raised IndexError under load.
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from assistant.tokens import stem

    words = [
        f"{base}{suffix}"
        for base in ("releas", "separat", "licens", "remix", "sampl")
        for suffix in ("ing", "ed", "es", "ational", "iveness", "fulness")
    ]
    expected = [stem.__wrapped__(w) for w in words]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, inside each word
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: [stem.__wrapped__(w) for w in words * 50], range(16)))
    finally:
        sys.setswitchinterval(interval)
    assert all(result == expected * 50 for result in results)


def test_the_compiled_stemmer_serves_and_stems_every_corpus_word_as_the_python_algorithm_does() -> None:
    # PyStemmer (Snowball compiled to C) is what snowballstemmer hands out when it is installed: 25 times faster,
    # and the sentence index's BM25 stems the whole corpus on a server's first question. Its stems must be the
    # pure-Python algorithm's, or a lexical score would change with what happens to be installed.
    import snowballstemmer
    from snowballstemmer.english_stemmer import EnglishStemmer

    from assistant.corpus import load_corpus
    from assistant.settings import load_settings

    assert type(snowballstemmer.stemmer("english")).__module__ == "Stemmer"
    corpus = load_corpus(load_settings().corpus_dir)
    vocabulary = sorted({w for text in corpus.texts.values() for w in words(text)})
    assert len(vocabulary) > 3000
    reference = EnglishStemmer()
    assert [stem.__wrapped__(w) for w in vocabulary] == [reference.stemWord(w) for w in vocabulary]
