"""Section-aware chunking on sentence boundaries.

A chunk never crosses a ``## `` section and always starts and ends on a
sentence boundary. Its ``page_content`` is an exact slice of its corpus file
(``text[start:end]``), so quotes taken from it can be verified by string match.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from dataclasses import dataclass

from langchain_core.documents import Document

from assistant.corpus import Corpus, Section

CHUNKER_VERSION = "6"

_ABBREVIATIONS = frozenset(
    [
        "u.s",
        "u.s.c",
        "pub",
        "l",
        "stat",
        "no",
        "nos",
        "e.g",
        "i.e",
        "etc",
        "v",
        "vs",
        "sec",
        "secs",
        "art",
        "arts",
        "cl",
        "subsec",
        "subsecs",
        "para",
        "paras",
        "seq",
        "mr",
        "ms",
        "dr",
        "st",
        "jan",
        "feb",
        "mar",
        "apr",
        "aug",
        "sept",
        "oct",
        "nov",
        "dec",
        "inc",
        "corp",
        "co",
        "ltd",
        "div",
        "fn",
        "p",
        "pp",
        "ch",
    ]
)
# End of a sentence: terminal punctuation, optional closing quote/bracket, then white space.
_SENTENCE_END = re.compile(r"[.!?…](?:[\"”’)\]]+)?(?=\s)")
_PARAGRAPH = re.compile(r"[^\n]+(?:\n(?!\n)[^\n]+)*")
_SKIPPED_PARAGRAPH = re.compile(r"^(Source credit:|\[fn)")
_LABEL_WORDS = 6
"""A paragraph's first "sentence" of at most this many words is a run-in label ("Whether you get caught.").
Six covers every label the article uses (the longest, "What you do with the stems.", has six)."""
_LIST_ITEM = re.compile(r"^(?:- |\d+\. )", re.MULTILINE)


@dataclass(frozen=True)
class Span:
    """A sentence (or list item) as a character span of its file."""

    start: int
    end: int
    quote_start: int = -1
    """Where the quotable sentence begins: after a run-in label, else at ``start``."""

    @property
    def quote(self) -> int:
        """Start of the part of the span an answer may quote."""
        return self.start if self.quote_start < 0 else self.quote_start


_WORD_CHARACTERS = frozenset(string.ascii_letters + ".")


def word_before(text: str, dot: int) -> str:
    """The run of ASCII letters and dots that ends at ``dot`` (or at a line break just before it), else "".

    What ``re.search(r"([A-Za-z.]+)$", text[:dot])`` finds, read backwards from ``dot``: the search scanned the
    whole file up to ``dot`` for every full stop, a quarter of an index build's time outside embedding
    (``tests/test_chunking.py`` checks the two agree).
    """
    end = dot - 1 if dot > 0 and text[dot - 1] == "\n" else dot  # ``$`` also matches before a final newline
    begin = end
    while begin > 0 and text[begin - 1] in _WORD_CHARACTERS:
        begin -= 1
    return text[begin:end]


def _is_abbreviation(text: str, dot: int) -> bool:
    word = word_before(text, dot)
    if not word:
        return False
    token = word.lower().strip(".")
    return token in _ABBREVIATIONS or (len(token) == 1 and token.isalpha())


def _split_sentences(text: str, start: int, end: int, prose: bool = True) -> list[Span]:
    """Sentence spans inside ``text[start:end]`` (one paragraph, or one list item when not ``prose``)."""
    spans: list[Span] = []
    cursor = start
    for match in _SENTENCE_END.finditer(text, start, end):
        if match.group(0).startswith(".") and _is_abbreviation(text, match.start()):
            continue
        following = text[match.end() : end].lstrip()
        if following and not (following[0].isupper() or following[0] in '“"(§[0-9'):
            continue
        spans.append(Span(cursor, match.end()))
        cursor = match.end()
        while cursor < end and text[cursor].isspace():
            cursor += 1
    if cursor < end:
        spans.append(Span(cursor, end))
    # "Reproduction. Processing a copyrighted recording ..." -- a short run-in label belongs to the
    # sentence it introduces: never a sentence of its own, and not part of what an answer quotes.
    # A list item's number ("1. U.S. Copyright Act — …") is part of the item itself.
    if len(spans) > 1 and len(text[spans[0].start : spans[0].end].split()) <= _LABEL_WORDS:
        label = prose and text[spans[0].start].isalpha()
        spans[0:2] = [Span(spans[0].start, spans[1].end, spans[1].start if label else -1)]
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of one paragraph of text as the chunker splits them, each also without its run-in label."""
    spans = _split_sentences(text, 0, len(text))
    return [text[start : span.end] for span in spans for start in dict.fromkeys((span.start, span.quote))]


def split_paragraphs(file_text: str, start: int, end: int) -> list[list[Span]]:
    """Paragraphs of ``file_text[start:end]``, each as its sentence spans (source credits left out)."""
    paragraphs: list[list[Span]] = []
    for match in _PARAGRAPH.finditer(file_text, start, end):
        if _SKIPPED_PARAGRAPH.match(match.group(0)):
            continue
        if _LIST_ITEM.match(match.group(0)):
            # A list: every item is a unit of its own, whatever punctuation it ends with.
            offset = match.start()
            items: list[Span] = []
            for line in match.group(0).split("\n"):
                items.extend(_split_sentences(file_text, offset, offset + len(line), prose=False))
                offset += len(line) + 1
            paragraphs.append(items)
            continue
        paragraphs.append(_split_sentences(file_text, match.start(), match.end()))
    return paragraphs


def section_sentences(section: Section, file_text: str) -> list[list[Span]]:
    """The section's paragraphs, each as its list of sentence spans."""
    return split_paragraphs(file_text, section.start, section.end)


def _pack(paragraphs: list[list[Span]], limit: int) -> Iterator[list[Span]]:
    """Greedily pack consecutive sentences into chunks of at most ``limit`` characters.

    A paragraph boundary is preferred as a break once the chunk is half full.
    """
    current: list[Span] = []
    for paragraph in paragraphs:
        if current and current[-1].end - current[0].start >= limit // 2:
            yield current
            current = []
        for span in paragraph:
            if current and span.end - current[0].start > limit:
                yield current
                current = []
            current.append(span)
    if current:
        yield current


def chunk_corpus(corpus: Corpus, limit: int) -> list[Document]:
    """Every section of every text, as chunks with rich metadata."""
    documents: list[Document] = []
    for section in corpus.sections:
        file_text = corpus.text_of(section.source.id)
        for position, spans in enumerate(_pack(section_sentences(section, file_text), limit)):
            start, end = spans[0].start, spans[-1].end
            documents.append(
                Document(
                    id=f"{section.source.id}/{section.index:03d}/{position:03d}",
                    page_content=file_text[start:end],
                    metadata={
                        "source_id": section.source.id,
                        "source_title": section.source.title,
                        "source_kind": section.source.kind,
                        "section": section.heading,
                        "section_index": section.index,
                        "chunk_index": position,
                        "url": section.url or "",
                        "file": section.file,
                        "start": start,
                        "end": end,
                    },
                )
            )
    return documents


def sentence_documents(corpus: Corpus, chunks: list[Document]) -> list[Document]:
    """Every sentence (or list item) of every chunk, as exact slices with their chunk's metadata."""
    sentences: list[Document] = []
    for chunk in chunks:
        meta = chunk.metadata
        text = corpus.text_of(meta["source_id"])
        paragraphs = split_paragraphs(text, int(meta["start"]), int(meta["end"]))
        for position, (paragraph, span) in enumerate((p, s) for p, spans in enumerate(paragraphs) for s in spans):
            sentences.append(
                Document(
                    id=f"{chunk.id}#{position:03d}",
                    page_content=text[span.start : span.end],
                    metadata={
                        **meta,
                        "chunk_id": str(chunk.id),
                        "start": span.start,
                        "end": span.end,
                        "paragraph": paragraph,
                        "kind": "sentence",
                        # The paragraph's run-in label ("Whether you get caught."), if the sentence opens
                        # with one: shown as a lead-in of the sentence, never as a sentence of its own.
                        "label": text[span.start : span.quote].strip(),
                    },
                )
            )
    return sentences


def paragraph_documents(corpus: Corpus, sentences: list[Document]) -> list[Document]:
    """Every paragraph of every chunk (its sentences' span), as exact slices keyed like its sentences.

    A sentence alone often misses what its paragraph is about ("The output is not the original
    isolated track." is the article's answer on reconstruction): the paragraph's embedding says it.
    """
    runs: dict[tuple[str, int], list[Document]] = {}
    for sentence in sentences:
        runs.setdefault((sentence.metadata["chunk_id"], sentence.metadata["paragraph"]), []).append(sentence)
    paragraphs: list[Document] = []
    for (chunk_id, paragraph), run in runs.items():
        meta = run[0].metadata
        start, end = meta["start"], run[-1].metadata["end"]
        paragraphs.append(
            Document(
                id=f"{chunk_id}#p{paragraph:03d}",
                page_content=corpus.text_of(meta["source_id"])[start:end],
                metadata={**meta, "start": start, "end": end, "kind": "paragraph"},
            )
        )
    return paragraphs


def embedding_text(document: Document) -> str:
    """What gets embedded: the heading gives a chunk its topic, and a sentence or paragraph its context."""
    meta = document.metadata
    if meta.get("kind") in ("sentence", "paragraph"):
        return f"{meta['section']}: {document.page_content}"
    if meta.get("kind") == "heading":
        return document.page_content
    prefix = "Article" if meta["source_kind"] == "article" else meta["source_title"]
    return f"{prefix} — {meta['section']}\n{document.page_content}"
