"""The sentence bank: sentences, their vectors and their paragraphs' vectors, from the real index."""

from __future__ import annotations

import numpy as np
import pytest

from assistant.assistant import Assistant
from assistant.sentences import SentenceBank

pytestmark = pytest.mark.slow


def test_every_sentence_is_scored_in_its_paragraphs_context(assistant: Assistant) -> None:
    bank = assistant._sentences
    query = assistant._query_vector("Is the separated vocal a reconstruction of the original?")
    for chunk_id in list(bank._sentences)[:200]:
        sentences = bank.sentences(chunk_id)
        in_context = bank.paragraph_similarities(chunk_id, query)
        assert len(in_context) == len(sentences)
        # Sentences of one paragraph share its score; a paragraph is not scored like its first sentence alone.
        for paragraph in {s.paragraph for s in sentences}:
            rows = [i for i, s in enumerate(sentences) if s.paragraph == paragraph]
            assert np.allclose(in_context[rows], in_context[rows[0]])


def test_a_sentence_is_scored_with_its_own_paragraphs_vector(assistant: Assistant) -> None:
    bank = assistant._sentences
    chunk_id, index = next(
        (chunk_id, i)
        for chunk_id in bank._sentences
        for i, s in enumerate(bank.sentences(chunk_id))
        if s.text == "The output is not the original isolated track."
    )
    paragraph = bank.paragraph(bank.sentences(chunk_id)[index])
    text = assistant.corpus.text_of("article")[paragraph[0].start : paragraph[-1].end]
    assert text.endswith("though perhaps less than some assume.")
    # The stored paragraph vector is the paragraph's embedding (with its heading, as indexed).
    expected = np.asarray(assistant._embeddings.embed_documents([f"What Stem Separation Actually Does: {text}"])[0])
    query = assistant._query_vector("Is the separated vocal the original track?")
    assert bank.paragraph_similarities(chunk_id, query)[index] == pytest.approx(float(expected @ query), abs=1e-4)


def test_a_bank_without_paragraph_vectors_scores_them_zero(assistant: Assistant) -> None:
    bank = assistant._sentences
    bare = SentenceBank(bank._sentences, bank._vectors)
    chunk_id = next(iter(bank._sentences))
    query = assistant._query_vector("fair use")
    assert not bare.paragraph_similarities(chunk_id, query).any()
    assert np.array_equal(bare.similarities(chunk_id, query), bank.similarities(chunk_id, query))
