from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from assistant.chunking import (
    chunk_corpus,
    embedding_text,
    paragraph_documents,
    section_sentences,
    sentence_documents,
    word_before,
)
from assistant.corpus import Corpus


@pytest.fixture(scope="module")
def chunks(corpus: Corpus):  # type: ignore[no-untyped-def]
    return chunk_corpus(corpus, 700)


def test_every_chunk_is_an_exact_slice_of_its_file(corpus: Corpus, chunks) -> None:  # type: ignore[no-untyped-def]
    for chunk in chunks:
        meta = chunk.metadata
        assert corpus.text_of(meta["source_id"])[meta["start"] : meta["end"]] == chunk.page_content


def test_chunks_never_cross_a_section_boundary(corpus: Corpus, chunks) -> None:  # type: ignore[no-untyped-def]
    for chunk in chunks:
        section = corpus.section(chunk.metadata["source_id"], chunk.metadata["section"])
        assert section.start <= chunk.metadata["start"] < chunk.metadata["end"] <= section.end
        assert "\n## " not in chunk.page_content


def test_chunks_end_on_sentence_boundaries(corpus: Corpus, chunks) -> None:  # type: ignore[no-untyped-def]
    for chunk in chunks:
        text = corpus.text_of(chunk.metadata["source_id"])
        end = chunk.metadata["end"]
        ends_sentence = chunk.page_content.rstrip()[-1] in '.!?…”")];:—'
        ends_line = end == len(text) or text[end] == "\n"
        assert ends_sentence or ends_line, chunk.page_content[-60:]


def test_chunks_stay_near_the_size_limit(chunks) -> None:  # type: ignore[no-untyped-def]
    oversized = [c for c in chunks if len(c.page_content) > 700]
    # Only a single sentence longer than the limit may stand alone in a chunk.
    for chunk in oversized:
        assert len(chunk.page_content.split(". ")) <= 2 or "\n" not in chunk.page_content.strip()


def test_every_article_section_has_chunks_with_rich_metadata(corpus: Corpus, chunks) -> None:  # type: ignore[no-untyped-def]
    article_sections = {c.metadata["section"] for c in chunks if c.metadata["source_id"] == "article"}
    assert article_sections == {s.heading for s in corpus.sections if s.source.id == "article"}
    sample = next(c for c in chunks if c.metadata["section"].startswith("§ 107."))
    assert sample.metadata["url"].endswith("#107")
    assert sample.metadata["source_title"] == "U.S. Copyright Act — Exclusive Rights"
    assert embedding_text(sample).startswith("U.S. Copyright Act — Exclusive Rights — § 107.")


def test_source_credits_are_not_indexed(chunks) -> None:  # type: ignore[no-untyped-def]
    assert not any(c.page_content.startswith("Source credit:") for c in chunks)


def test_list_items_and_run_in_labels_are_sentence_units(corpus: Corpus) -> None:
    text = corpus.text_of("article")
    checklist = [
        text[s.start : s.end] for p in section_sentences(corpus.article_section("Practical Checklist"), text) for s in p
    ]
    assert len(checklist) == 8 and all(item.startswith("- ") for item in checklist)
    what = [
        text[s.start : s.end]
        for p in section_sentences(corpus.article_section("What Stem Separation Actually Does"), text)
        for s in p
    ]
    assert any(s.startswith("Reproduction. Processing a copyrighted recording") for s in what)
    assert "Extraction vs. creation. Some argue" in " ".join(what)
    assert not any(s == "Reproduction." for s in what)


def test_sentences_are_exact_slices_inside_their_chunk(corpus: Corpus, chunks) -> None:  # type: ignore[no-untyped-def]
    by_id = {str(c.id): c for c in chunks}
    for sentence in sentence_documents(corpus, chunks):
        meta = sentence.metadata
        assert corpus.text_of(meta["source_id"])[meta["start"] : meta["end"]] == sentence.page_content
        chunk = by_id[meta["chunk_id"]]
        assert chunk.metadata["start"] <= meta["start"] < meta["end"] <= chunk.metadata["end"]


def test_paragraphs_are_exact_slices_that_hold_their_sentences(corpus: Corpus, chunks) -> None:  # type: ignore[no-untyped-def]
    sentences = sentence_documents(corpus, chunks)
    paragraphs = paragraph_documents(corpus, sentences)
    by_key = {(p.metadata["chunk_id"], p.metadata["paragraph"]): p for p in paragraphs}
    assert len(by_key) == len(paragraphs) == len({str(p.id) for p in paragraphs})
    for paragraph in paragraphs:
        meta = paragraph.metadata
        assert corpus.text_of(meta["source_id"])[meta["start"] : meta["end"]] == paragraph.page_content
        assert embedding_text(paragraph).startswith(f"{meta['section']}: ")
    for sentence in sentences:
        meta = sentence.metadata
        holder = by_key[(meta["chunk_id"], meta["paragraph"])].metadata
        assert holder["start"] <= meta["start"] < meta["end"] <= holder["end"]
    # A paragraph of several sentences is one document, not one per sentence.
    assert len(paragraphs) < len(sentences)


def searched_word(text: str, dot: int) -> str:
    """The word before a full stop as the chunker first found it: a regular-expression search of the prefix."""
    found = re.search(r"([A-Za-z.]+)$", text[:dot])
    return found.group(1) if found else ""


@given(st.text(alphabet="aZ.é \n\t-1", max_size=40), st.data())
def test_the_word_before_a_stop_is_the_one_the_search_finds(text: str, data: st.DataObject) -> None:
    dot = data.draw(st.integers(min_value=0, max_value=len(text)))
    assert word_before(text, dot) == searched_word(text, dot)


def test_the_word_before_every_stop_of_the_corpus_is_the_one_the_search_finds(corpus: Corpus) -> None:
    checked = 0
    for source_id, text in corpus.texts.items():
        for dot in (m.start() for m in re.finditer(r"[.!?]", text)):
            assert word_before(text, dot) == searched_word(text, dot), (source_id, dot)
            checked += 1
    assert checked > 1000
