"""The sentence table: every sentence with its vectors, paragraphs, sections, lists and labels."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.assistant import Assistant

pytestmark = pytest.mark.slow


def test_every_sentence_is_an_exact_slice_with_unit_vectors(assistant: Assistant) -> None:
    table = assistant.table
    assert len(table.sentences) == table.vectors.shape[0] == table.paragraph_vectors.shape[0]
    for sentence in table.sentences:
        assert assistant.corpus.text_of(sentence.source_id)[sentence.start : sentence.end] == sentence.text
    assert np.allclose(np.linalg.norm(table.vectors, axis=1), 1.0, atol=1e-3)
    assert np.allclose(np.linalg.norm(table.heading_vectors, axis=1), 1.0, atol=1e-3)


def test_a_sentence_is_scored_with_its_own_paragraphs_vector(assistant: Assistant) -> None:
    table = assistant.table
    sentence = next(s for s in table.sentences if s.text == "The output is not the original isolated track.")
    paragraph = table.paragraph(sentence)
    text = assistant.corpus.text_of("article")[paragraph[0].start : paragraph[-1].end]
    assert text.endswith("though perhaps less than some assume.")
    expected = np.asarray(assistant._embeddings.embed_documents([f"What Stem Separation Actually Does: {text}"])[0])
    assert float(table.paragraph_vectors[sentence.row] @ expected) == pytest.approx(1.0, abs=1e-4)
    assert all(np.array_equal(table.paragraph_vectors[s.row], table.paragraph_vectors[sentence.row]) for s in paragraph)


def test_run_in_labels_open_their_sentence_and_are_never_a_sentence(assistant: Assistant) -> None:
    table = assistant.table
    labelled = [s for s in table.sentences if s.label]
    assert {s.label for s in labelled} >= {"Reproduction.", "Whether you get caught.", "Commission the work."}
    assert all(s.text.startswith(s.label) and len(s.text) > len(s.label) + 10 for s in labelled)
    assert not any(s.text.strip() in {"Reproduction.", "Whether you get caught."} for s in table.sentences)


def test_a_list_item_knows_its_whole_list(assistant: Assistant) -> None:
    table = assistant.table
    item = next(s for s in table.sentences if s.text.startswith("- Read the terms of service"))
    checklist = table.list_of(item)
    assert len(checklist) == 8 and all(s.section == "Practical Checklist" for s in checklist)
    bullet = next(s for s in table.sentences if s.text.startswith("- You plan to commercially release"))
    assert [s.text[:12] for s in table.list_of(bullet)][-1] == "- You are ne"
    plain = next(s for s in table.sentences if s.text.startswith("Spotify, Apple Music"))
    assert table.list_of(plain) == [plain]


def test_the_article_is_every_candidate_and_chunks_hold_their_sentences(assistant: Assistant) -> None:
    table = assistant.table
    assert {table.sentences[r].source_id for r in table.article_rows} == {"article"}
    for chunk in range(len(table.chunks)):
        for row in table.chunk_rows(chunk):
            assert table.sentences[row].chunk_id == str(table.chunks[chunk].id)
