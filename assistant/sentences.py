"""Sentences of the indexed chunks, with their embeddings cached.

Sentences are what answers quote and what the reranker compares with the
question. Each is a span of its corpus file, found by the same splitter the
chunker uses, so a quote is always an exact slice of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from assistant.chunking import split_paragraphs
from assistant.corpus import Corpus


@dataclass(frozen=True)
class Sentence:
    """One sentence (or list item) of a chunk."""

    chunk_id: str
    source_id: str
    section: str
    start: int
    end: int
    text: str
    paragraph: int


class SentenceBank:
    """Sentence spans per chunk and their embeddings, computed once and kept."""

    def __init__(self, corpus: Corpus, embeddings: Embeddings) -> None:
        self._corpus = corpus
        self._embeddings = embeddings
        self._sentences: dict[str, list[Sentence]] = {}
        self._vectors: dict[str, np.ndarray] = {}

    def sentences(self, chunk: Document) -> list[Sentence]:
        """The chunk's sentences in file order."""
        chunk_id = str(chunk.id)
        if chunk_id not in self._sentences:
            meta = chunk.metadata
            text = self._corpus.text_of(meta["source_id"])
            self._sentences[chunk_id] = [
                Sentence(
                    chunk_id,
                    meta["source_id"],
                    meta["section"],
                    span.start,
                    span.end,
                    text[span.start : span.end],
                    paragraph,
                )
                for paragraph, spans in enumerate(split_paragraphs(text, int(meta["start"]), int(meta["end"])))
                for span in spans
            ]
        return self._sentences[chunk_id]

    def vectors(self, chunk: Document) -> np.ndarray:
        """Unit vectors of the chunk's sentences, each embedded with its section heading for context."""
        chunk_id = str(chunk.id)
        if chunk_id not in self._vectors:
            sentences = self.sentences(chunk)
            texts = [f"{s.section}: {s.text}" for s in sentences]
            self._vectors[chunk_id] = np.asarray(self._embeddings.embed_documents(texts), dtype=float).reshape(
                len(texts), -1
            )
        return self._vectors[chunk_id]

    def warm(self, chunks: Sequence[Document]) -> None:
        """Embed the sentences of many chunks in one batch (start-up, not per question)."""
        missing = [c for c in chunks if str(c.id) not in self._vectors]
        texts = [f"{s.section}: {s.text}" for c in missing for s in self.sentences(c)]
        if not texts:
            return
        matrix = np.asarray(self._embeddings.embed_documents(texts), dtype=float)
        offset = 0
        for chunk in missing:
            count = len(self.sentences(chunk))
            self._vectors[str(chunk.id)] = matrix[offset : offset + count]
            offset += count

    def similarities(self, chunk: Document, query_vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of each sentence of the chunk to the query."""
        vectors = self.vectors(chunk)
        return vectors @ query_vector if len(vectors) else np.zeros(0)

    def best_similarity(self, chunk: Document, query_vector: np.ndarray) -> float:
        """The similarity of the chunk's best-matching sentence."""
        sims = self.similarities(chunk, query_vector)
        return float(sims.max()) if len(sims) else 0.0
