"""Sentences of the indexed chunks with their embeddings, loaded once from the index.

Sentences are what answers quote and what the reranker compares with the
question; their paragraphs' vectors say what a sentence is about in context.
Each is a span of its corpus file, found by the same splitter the
chunker uses, so a quote is always an exact slice of the file.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from langchain_chroma import Chroma


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
    """Per chunk: its sentences in file order, their unit vectors and those of their paragraphs."""

    def __init__(
        self,
        sentences: dict[str, list[Sentence]],
        vectors: dict[str, np.ndarray],
        paragraph_vectors: dict[str, np.ndarray] | None = None,
    ) -> None:
        self._sentences = sentences
        self._vectors = vectors
        self._paragraph_vectors = paragraph_vectors or {}
        # Every sentence of a section in file order, across chunk boundaries.
        self._by_section: dict[tuple[str, str], list[Sentence]] = {}
        for chunk in sentences.values():
            for sentence in chunk:
                self._by_section.setdefault((sentence.source_id, sentence.section), []).append(sentence)
        for run in self._by_section.values():
            run.sort(key=lambda s: s.start)

    @classmethod
    def from_store(cls, store: Chroma, paragraphs: Chroma | None = None) -> SentenceBank:
        """Load every sentence and its embedding from the index's sentence collection (and its paragraphs')."""
        records = store.get(include=["documents", "metadatas", "embeddings"])
        rows = sorted(
            zip(records["ids"], records["documents"], records["metadatas"], records["embeddings"], strict=True),
            key=lambda row: row[0],
        )
        sentences: dict[str, list[Sentence]] = {}
        vectors: dict[str, list[np.ndarray]] = {}
        for _, text, meta, vector in rows:
            chunk_id = str(meta["chunk_id"])
            sentences.setdefault(chunk_id, []).append(
                Sentence(
                    chunk_id,
                    str(meta["source_id"]),
                    str(meta["section"]),
                    int(meta["start"]),
                    int(meta["end"]),
                    text,
                    int(meta["paragraph"]),
                )
            )
            vectors.setdefault(chunk_id, []).append(np.asarray(vector, dtype=float))
        return cls(
            sentences,
            {chunk_id: np.vstack(rows_) for chunk_id, rows_ in vectors.items()},
            _paragraph_vectors(paragraphs, sentences) if paragraphs is not None else None,
        )

    def sentences(self, chunk_id: str) -> list[Sentence]:
        """The chunk's sentences in file order."""
        return self._sentences.get(chunk_id, [])

    def similarities(self, chunk_id: str, query_vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of each sentence of the chunk to the query."""
        vectors = self._vectors.get(chunk_id)
        return vectors @ query_vector if vectors is not None else np.zeros(0)

    def paragraph_similarities(self, chunk_id: str, query_vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of each sentence's paragraph to the query (zeros without paragraph vectors)."""
        vectors = self._paragraph_vectors.get(chunk_id)
        return vectors @ query_vector if vectors is not None else np.zeros(len(self.sentences(chunk_id)))

    def best_similarity(self, chunk_id: str, query_vector: np.ndarray) -> float:
        """The similarity of the chunk's best-matching sentence."""
        sims = self.similarities(chunk_id, query_vector)
        return float(sims.max()) if len(sims) else 0.0

    def paragraph(self, sentence: Sentence) -> list[Sentence]:
        """Every sentence of the sentence's paragraph (within its chunk), in file order."""
        return [s for s in self._sentences.get(sentence.chunk_id, []) if s.paragraph == sentence.paragraph]

    def section_run(self, sentence: Sentence) -> list[Sentence]:
        """Every sentence of the sentence's section, in file order."""
        return self._by_section.get((sentence.source_id, sentence.section), [])

    def following(self, sentence: Sentence, count: int) -> list[Sentence]:
        """Up to ``count`` sentences after ``sentence`` in its section (across chunks)."""
        run = self._by_section.get((sentence.source_id, sentence.section), [])
        index = next((i for i, s in enumerate(run) if s.start == sentence.start), len(run))
        return run[index + 1 : index + 1 + count]


def _paragraph_vectors(store: Chroma, sentences: dict[str, list[Sentence]]) -> dict[str, np.ndarray]:
    """Per chunk, the vector of each sentence's paragraph, row for row with its sentences."""
    records = store.get(include=["metadatas", "embeddings"])
    by_paragraph = {
        (str(meta["chunk_id"]), int(meta["paragraph"])): np.asarray(vector, dtype=float)
        for meta, vector in zip(records["metadatas"], records["embeddings"], strict=True)
    }
    # No fallback for a missing paragraph: a build that lacks one is incomplete, and fails loudly here.
    return {
        chunk_id: np.vstack([by_paragraph[(chunk_id, s.paragraph)] for s in chunk])
        for chunk_id, chunk in sentences.items()
    }
