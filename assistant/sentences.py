"""The indexed corpus as arrays: every sentence with its vector, its paragraph's, its chunk's and its section's.

Sentences are what answers quote and what the ranker scores. Each is a span
of its corpus file, found by the same splitter the chunker uses, so a quote
is always an exact slice of the file. The table is loaded once from the
Chroma build; with about 1,700 sentences and 860 chunks, exact similarities
for a question are one matrix product each.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from langchain_core.documents import Document

from assistant.corpus import Corpus
from assistant.lexical import BM25Index

_LIST_ITEM = re.compile(r"^(?:- |\(\w{1,4}\) |\d+\. )")
_LEAD_IN = ("—", ":", "following")


def records_by_id(records: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], Any]]:
    """A Chroma ``get`` result (ids, documents, metadatas, embeddings) as rows in id order, i.e. corpus order."""
    return sorted(
        zip(records["ids"], records["documents"], records["metadatas"], records["embeddings"], strict=True),
        key=lambda row: row[0],
    )


@dataclass(frozen=True)
class Sentence:
    """One sentence (or list item) of the corpus."""

    row: int
    chunk_id: str
    source_id: str
    section: str
    start: int
    end: int
    text: str
    paragraph: tuple[str, int]
    """(chunk id, paragraph number in the chunk): sentences of one paragraph share it."""
    position: int
    """Where the sentence stands in its paragraph (0 = first)."""
    label: str = ""
    """The paragraph's run-in label the sentence opens with ("Whether you get caught."), if any."""

    @property
    def is_list_item(self) -> bool:
        """A bullet or numbered item (of a list, or of the statute's enumerations)."""
        return bool(_LIST_ITEM.match(self.text))

    @property
    def is_item(self) -> bool:
        """An item of a list: a bullet or numbered item, or a paragraph's labelled first sentence."""
        return self.is_list_item or bool(self.label)

    @property
    def is_lead_in(self) -> bool:
        """A sentence that introduces what follows it ("… the factors to be considered shall include—")."""
        return self.text.rstrip().endswith(_LEAD_IN)


@dataclass(frozen=True)
class SectionInfo:
    """A section of the corpus, as the table knows it."""

    source_id: str
    heading: str
    kind: str


class SentenceTable:
    """Every sentence with its vectors, grouped by paragraph, section and chunk."""

    def __init__(
        self,
        sentences: Sequence[Sentence],
        vectors: np.ndarray,
        paragraph_vectors: np.ndarray,
        chunks: Sequence[Document],
        chunk_vectors: np.ndarray,
        sections: Sequence[SectionInfo],
        heading_vectors: np.ndarray,
    ) -> None:
        self.sentences = list(sentences)
        self.vectors = vectors
        self.paragraph_vectors = paragraph_vectors
        self.chunks = list(chunks)
        self.chunk_vectors = chunk_vectors
        self.sections = list(sections)
        self.heading_vectors = heading_vectors
        self._chunk_row = {str(doc.id): i for i, doc in enumerate(self.chunks)}
        self.chunk_of = np.array([self._chunk_row[s.chunk_id] for s in self.sentences], dtype=int)
        section_row = {(s.source_id, s.heading): i for i, s in enumerate(self.sections)}
        self.section_of = np.array([section_row[(s.source_id, s.section)] for s in self.sentences], dtype=int)
        self._by_paragraph: dict[tuple[str, int], list[Sentence]] = {}
        self._by_section: dict[int, list[Sentence]] = {}
        for sentence in self.sentences:
            self._by_paragraph.setdefault(sentence.paragraph, []).append(sentence)
            self._by_section.setdefault(int(self.section_of[sentence.row]), []).append(sentence)
        self.kinds = sorted({s.kind for s in self.sections})

    @classmethod
    def from_records(
        cls,
        corpus: Corpus,
        sentence_records: dict[str, Any],
        paragraph_records: dict[str, Any],
        chunks: Sequence[Document],
        chunk_vectors: np.ndarray,
        heading_vectors: dict[tuple[str, str], np.ndarray],
    ) -> SentenceTable:
        """Build the table from the index's collections (as returned by Chroma's ``get``)."""
        rows = records_by_id(sentence_records)
        by_paragraph = {
            (str(meta["chunk_id"]), int(meta["paragraph"])): np.asarray(vector, dtype=np.float32)
            for meta, vector in zip(paragraph_records["metadatas"], paragraph_records["embeddings"], strict=True)
        }
        sentences: list[Sentence] = []
        positions: dict[tuple[str, int], int] = {}
        for _, text, meta, _vector in rows:
            key = (str(meta["chunk_id"]), int(meta["paragraph"]))
            positions[key] = positions.get(key, -1) + 1
            sentences.append(
                Sentence(
                    row=len(sentences),
                    chunk_id=key[0],
                    source_id=str(meta["source_id"]),
                    section=str(meta["section"]),
                    start=int(meta["start"]),
                    end=int(meta["end"]),
                    text=text,
                    paragraph=key,
                    position=positions[key],
                    label=str(meta.get("label") or ""),
                )
            )
        vectors = np.vstack([np.asarray(row[3], dtype=np.float32) for row in rows])
        # No fallback for a missing paragraph: a build that lacks one is incomplete, and fails loudly here.
        paragraph_vectors = np.vstack([by_paragraph[s.paragraph] for s in sentences])
        sections = [SectionInfo(s.source.id, s.heading, s.source.kind) for s in corpus.sections]
        headings = np.vstack([heading_vectors[(s.source_id, s.heading)] for s in sections]).astype(np.float32)
        return cls(sentences, vectors, paragraph_vectors, chunks, chunk_vectors, sections, headings)

    # -- structure ---------------------------------------------------------------------------------

    def paragraph(self, sentence: Sentence) -> list[Sentence]:
        """Every sentence of the sentence's paragraph, in file order."""
        return self._by_paragraph[sentence.paragraph]

    def section_run(self, sentence: Sentence) -> list[Sentence]:
        """Every sentence of the sentence's section, in file order."""
        return self._by_section[int(self.section_of[sentence.row])]

    def following(self, sentence: Sentence, count: int) -> list[Sentence]:
        """Up to ``count`` sentences after ``sentence`` in its section (across chunks)."""
        run = self.section_run(sentence)
        index = next(i for i, s in enumerate(run) if s.row == sentence.row)
        return run[index + 1 : index + 1 + count]

    def list_of(self, sentence: Sentence) -> list[Sentence]:
        """The whole list a list item (or a list's lead-in) belongs to, lead-in first when there is one.

        Paragraphs that open with a run-in label ("License the multitrack. …", "Whether you get caught. …")
        are the items of a list too: the labelled sentences of the section, in order.
        """
        run = self.section_run(sentence)
        if sentence.label:
            labelled = [s for s in run if s.label]
            return labelled if len(labelled) >= 2 else [sentence]
        index = next(i for i, s in enumerate(run) if s.row == sentence.row)
        first = index
        while first > 0 and run[first].is_list_item and run[first - 1].is_list_item:
            first -= 1
        if first > 0 and run[first].is_list_item and run[first - 1].is_lead_in:
            first -= 1
        last = index + 1
        while last < len(run) and run[last].is_list_item:
            last += 1
        items = run[first:last]
        return items if sum(s.is_list_item for s in items) >= 2 else [sentence]

    def chunk_rows(self, chunk_index: int) -> np.ndarray:
        """The table rows of one chunk's sentences."""
        return self._chunk_members[chunk_index]

    @cached_property
    def _chunk_members(self) -> list[np.ndarray]:
        members: list[list[int]] = [[] for _ in self.chunks]
        for sentence in self.sentences:
            members[int(self.chunk_of[sentence.row])].append(sentence.row)
        return [np.array(rows, dtype=int) for rows in members]

    @cached_property
    def article_rows(self) -> np.ndarray:
        """Rows of the article's sentences (the document every question is first about)."""
        kinds = {(s.source_id, s.heading): s.kind for s in self.sections}
        return np.array(
            [s.row for s in self.sentences if kinds[(s.source_id, s.section)] == "article"],
            dtype=int,
        )

    @cached_property
    def static_features(self) -> np.ndarray:
        """What a sentence is, whatever the question.

        Columns: list item, lead-in, labelled, position, first of its section, log length, in the article.
        """
        kinds = {(s.source_id, s.heading): s.kind for s in self.sections}
        firsts = {run[0].row for run in self._by_section.values()}
        return np.array(
            [
                [
                    s.is_list_item,
                    s.is_lead_in,
                    bool(s.label),
                    min(s.position, 5),
                    s.row in firsts,
                    np.log1p(len(s.text)),
                    kinds[(s.source_id, s.section)] == "article",
                ]
                for s in self.sentences
            ],
            dtype=float,
        )

    @cached_property
    def section_kind_masks(self) -> dict[str, np.ndarray]:
        """Per source kind, which sections are of it."""
        return {kind: np.array([s.kind == kind for s in self.sections]) for kind in self.kinds}

    @cached_property
    def sentence_kind(self) -> np.ndarray:
        """Per sentence, the index of its source kind in ``kinds``."""
        return np.array([self.kinds.index(self.sections[int(i)].kind) for i in self.section_of], dtype=int)

    # -- lexical ----------------------------------------------------------------------------------

    @cached_property
    def sentence_bm25(self) -> BM25Index:
        """BM25 over sentences, each with its section heading."""
        return BM25Index([f"{s.section} {s.text}" for s in self.sentences])

    @cached_property
    def chunk_bm25(self) -> BM25Index:
        """BM25 over chunks, each with its section heading (candidate generation)."""
        return BM25Index([f"{doc.metadata['section']} {doc.page_content}" for doc in self.chunks])

    @cached_property
    def heading_bm25(self) -> BM25Index:
        """BM25 over section headings: how strongly a question names a section ("the checklist")."""
        return BM25Index([s.heading for s in self.sections])
