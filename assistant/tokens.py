"""Word tokens for lexical matching: lower-cased words, stop words dropped, Snowball-stemmed.

One tokenizer serves BM25, the lexical features of the ranker and typo repair,
so "released", "releases" and "releasing" meet as one term everywhere.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import snowballstemmer

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)
_STEMMERS = threading.local()
"""One Snowball stemmer per thread: a stemmer keeps the word it works on in itself, so one shared by the
server's threads garbles a word another thread is stemming (an IndexError in a soak of 4,900 answers)."""

# English function words, contractions and chat filler: they say how a question is asked, not what
# about. "article" names the document asked about, not the statute's "useful article".
_STOPWORDS = """
    a about above after again against all am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
    now of off on once only or other our ours ourselves out over own same she should so some such than that
    the their theirs them themselves then there these they this those through to too under until up very was
    we were what when where which while who whom why will with would you your yours yourself yourselves
    s t don ll m re ve d im ive id youre also get got really anything something thing things say says said tell
    know want wants like lot much many okay ok hey hi please thanks thank one ones article articles
"""
STOPWORDS = frozenset(_STOPWORDS.split())


def words(text: str) -> list[str]:
    """Lower-case word tokens (accents kept, curly apostrophes straightened)."""
    return [w.replace("’", "'") for w in _WORD.findall(text.lower())]


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    """The Snowball (Porter 2) stem of a lower-case word."""
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = snowballstemmer.stemmer("english")
    return str(stemmer.stemWord(word))


def content_tokens(text: str) -> list[str]:
    """Stemmed tokens without stop words or one-letter words."""
    return [stem(w) for w in words(text) if w not in STOPWORDS and len(w) > 1]
