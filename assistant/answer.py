"""Answer composers: from ranked passages to a short answer whose every sentence is cited.

The default :class:`ExtractiveComposer` needs no generative model: it picks
the sentences of the retrieved passages that best answer the question and
quotes them verbatim, so each sentence carries a ``[n]`` marker and each
citation's quote is an exact slice of its corpus file (checked before it is
returned). Quoting whole sentences keeps the article's hedges ("arguably",
"not airtight") with the claims they qualify.

Composers sit behind :class:`AnswerComposer`, so a generative backend can be
added without touching retrieval or guardrails.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from langchain_core.documents import Document

from assistant.corpus import ESCALATION_HEADING, Corpus
from assistant.errors import AssistantError
from assistant.query import PreparedQuery, content_tokens
from assistant.schemas import Citation
from assistant.sentences import Sentence, SentenceBank

_HEDGE = re.compile(
    r"\b(?:arguably|not airtight|not clearly resolved|untested|has not been tested|may|might|likely|perhaps|"
    r"could|depends)\b",
    re.IGNORECASE,
)
# Qualifications of a whole claim: when the claim is quoted, these come along from its paragraph.
_STRONG_HEDGE = re.compile(
    r"\b(?:not airtight|not clearly resolved|untested|not been tested|not (?:yet )?settled|unclear|uncertain)\b",
    re.IGNORECASE,
)
_LIST_ITEM = re.compile(r"^(?:- |\(\w{1,4}\) |\d+\. )")
_LEAD_IN = ("—", ":", "following")
_ASKS_ABOUT_LAWYERS = re.compile(r"\b(?:lawyer|attorney|solicitor|counsel|legal (?:help|advice)|professional)", re.I)


@dataclass(frozen=True)
class CompositionRequest:
    """Everything a composer may use to answer one question."""

    query: PreparedQuery
    query_vector: np.ndarray
    passages: Sequence[Document]


@dataclass(frozen=True)
class Composition:
    """A composed answer before the guardrails."""

    answer: str
    answered: bool
    citations: list[Citation]
    closest_sections: list[str] = field(default_factory=list)


class AnswerComposer(Protocol):
    """Turns retrieved passages into an answer with citations."""

    def compose(self, request: CompositionRequest) -> Composition:
        """Answer from the passages, or say plainly that they do not cover the question."""
        ...


@dataclass(frozen=True)
class _Candidate:
    sentence: Sentence
    score: float
    passage: Document


def distinct_sections(passages: Sequence[Document], limit: int = 3) -> list[str]:
    """The first ``limit`` distinct section headings among ranked passages."""
    sections: list[str] = []
    for doc in passages:
        if doc.metadata["section"] not in sections:
            sections.append(doc.metadata["section"])
    return sections[:limit]


def not_covered(passages: Sequence[Document], reason: str = "") -> Composition:
    """The honest reply when the corpus does not answer the question."""
    closest = distinct_sections(passages)
    names = ", ".join(f"“{name}”" for name in closest)
    text = " ".join(
        part
        for part in (
            "The article and the sources it cites do not cover this question, so I can't answer it from them.",
            reason,
            f"The closest sections are {names}." if closest else "",
        )
        if part
    )
    return Composition(answer=text, answered=False, citations=[], closest_sections=closest)


class ExtractiveComposer:
    """Quotes the best-matching sentences of the retrieved passages, verbatim and cited."""

    # Calibrated on the known-question set: below these, the passages do not answer the question.
    min_passage_score = 0.55
    min_sentence_similarity = 0.22
    # How far below the best sentence another may score and still be included: close for
    # the best section's context, wider for the best sentence of the next-ranked sections.
    margin = 0.16
    section_margin = 0.4
    # A sentence this short states a topic; the next one says what it is.
    topic_sentence_chars = 90

    def __init__(self, corpus: Corpus, sentences: SentenceBank, max_sentences: int = 5) -> None:
        self._corpus = corpus
        self._sentences = sentences
        self._max_sentences = max_sentences

    def _candidates(self, request: CompositionRequest) -> list[_Candidate]:
        top = float(request.passages[0].metadata["score"])
        terms = set(request.query.content_terms)
        phrases = _bigrams(request.query.original)
        focus = set(request.query.focus_terms)
        asks_about_lawyers = bool(_ASKS_ABOUT_LAWYERS.search(request.query.text))
        candidates: list[_Candidate] = []
        for doc in request.passages:
            chunk_id = str(doc.id)
            similarities = self._sentences.similarities(chunk_id, request.query_vector)
            for sentence, similarity in zip(self._sentences.sentences(chunk_id), similarities, strict=True):
                if sentence.text.strip() in request.query.already_said or len(sentence.text) < 12:
                    continue
                tokens = set(content_tokens(sentence.text))
                lexical = len(terms & tokens) / len(terms) if terms else 0.0
                focused = len(focus & tokens) / len(focus) if focus else 0.0
                phrase = 0.1 if phrases & _bigrams(sentence.text) else 0.0
                passage = float(doc.metadata["score"]) - top
                situation = 0.15 if sentence.section in request.query.preferred_sections else 0.0
                if sentence.section == ESCALATION_HEADING and not asks_about_lawyers:
                    situation -= 0.1  # its bullets reach the user as notices when they apply
                score = float(similarity) + 0.35 * lexical + 0.25 * focused + phrase + situation + 0.6 * passage
                candidates.append(_Candidate(sentence, score, doc))
        candidates.sort(key=lambda c: -c.score)
        return candidates

    def covers(self, request: CompositionRequest) -> bool:
        """Whether the passages answer the question rather than merely share a word or two with it."""
        top = request.passages[0]
        best = max(
            (self._sentences.best_similarity(str(doc.id), request.query_vector) for doc in request.passages[:3]),
            default=0.0,
        )
        return float(top.metadata["score"]) >= self.min_passage_score and best >= self.min_sentence_similarity

    def _select(self, candidates: list[_Candidate], passages: Sequence[Document]) -> list[_Candidate]:
        best = candidates[0]
        chosen = [best]

        def add(candidate: _Candidate) -> None:
            if len(chosen) >= self._max_sentences or any(c.sentence == candidate.sentence for c in chosen):
                return
            if candidate.sentence.text.rstrip().endswith(_LEAD_IN) and candidate is not best:
                return  # a lead-in without its list says nothing
            chosen.append(candidate)

        by_sentence = {c.sentence: c for c in candidates}
        # A lead-in ("... the factors to be considered shall include—") brings its list along.
        if best.sentence.text.rstrip().endswith(_LEAD_IN):
            for item in self._sentences.following(best.sentence, self._max_sentences - 1):
                add(by_sentence.get(item, _Candidate(item, best.score, best.passage)))
        # The next sentence of the best one's paragraph gives it context (and often its hedge).
        for item in self._sentences.following(best.sentence, 1):
            follower = by_sentence.get(item)
            if (
                item.paragraph == best.sentence.paragraph
                and follower is not None
                and (
                    follower.score >= best.score - self.section_margin
                    or _HEDGE.search(item.text)
                    or len(best.sentence.text) < self.topic_sentence_chars
                )
            ):
                add(follower)
        # A claim keeps the article's qualification of it ("... arguably a derivative work" -> "not airtight").
        for claim in list(chosen):
            run = [
                later
                for later in self._sentences.following(claim.sentence, 3)
                if later.paragraph == claim.sentence.paragraph and later.chunk_id == claim.sentence.chunk_id
            ]
            hedges = [i for i, later in enumerate(run) if _STRONG_HEDGE.search(later.text)]
            if hedges and len(chosen) + hedges[0] + 1 <= self._max_sentences:
                for later in run[: hedges[0] + 1]:  # the hedge and what leads up to it, so the quote reads on
                    add(by_sentence.get(later, _Candidate(later, claim.score, claim.passage)))
        # The best sentence of each of the next-ranked sections, when it is close enough.
        for section in distinct_sections(passages):
            if section == best.sentence.section:
                continue
            leader = next((c for c in candidates if c.sentence.section == section), None)
            if leader is not None and leader.score >= best.score - self.section_margin:
                add(leader)
        # Then context from the chosen passages: neighbours, and the hedges that qualify them.
        for candidate in candidates[1:]:
            if len(chosen) >= self._max_sentences:
                break
            neighbour = any(_adjacent(candidate.sentence, c.sentence) for c in chosen)
            bonus = 0.08 if neighbour else 0.0
            if neighbour and _HEDGE.search(candidate.sentence.text):
                bonus += 0.12  # a hedge travels with the claim it qualifies
            if candidate.score + bonus >= best.score - self.margin and candidate.sentence.section in {
                c.sentence.section for c in chosen
            }:
                add(candidate)
        if len(chosen) == 1:
            add(self._context_for(best, candidates))
        return chosen

    def _context_for(self, best: _Candidate, candidates: list[_Candidate]) -> _Candidate:
        """A second sentence when only one qualifies: its neighbour if it has one, else the runner-up."""
        for candidate in candidates[1:]:
            if _adjacent(candidate.sentence, best.sentence):
                return candidate
        return next((c for c in candidates[1:] if c.sentence.text != best.sentence.text), candidates[-1])

    def compose(self, request: CompositionRequest) -> Composition:
        """Pick, order and cite sentences; or say the corpus does not cover the question."""
        if not request.passages or not self.covers(request):
            return not_covered(request.passages)
        candidates = self._candidates(request)
        if not candidates:
            return not_covered(request.passages)
        chosen = self._select(candidates, request.passages)
        # Sections in the order they were chosen (best first), sentences in file order within each.
        section_order = list(dict.fromkeys(c.sentence.section for c in chosen))
        chosen.sort(key=lambda c: (section_order.index(c.sentence.section), c.sentence.source_id, c.sentence.start))
        return self._cite(chosen)

    def _cite(self, chosen: list[_Candidate]) -> Composition:
        citations: list[Citation] = []
        starts: list[int] = []  # where each citation's quote begins in its file
        lines: list[str] = []
        paragraph: list[str] = []
        previous: Sentence | None = None
        for candidate in chosen:
            sentence = candidate.sentence
            text = self._corpus.text_of(sentence.source_id)
            continues = (
                previous is not None
                and previous.section == sentence.section
                and previous.source_id == sentence.source_id
                and not text[previous.end : sentence.start].strip()
            )
            if continues:
                # Consecutive sentences share one citation whose quote spans them.
                citations[-1] = citations[-1].model_copy(update={"quote": text[starts[-1] : sentence.end]})
            else:
                if paragraph and previous is not None and previous.section != sentence.section:
                    lines.append(" ".join(paragraph))
                    paragraph = []
                citations.append(self._citation(len(citations) + 1, candidate))
                starts.append(sentence.start)
            marked = f"{sentence.text.strip()} [{citations[-1].n}]"
            if _LIST_ITEM.match(sentence.text):
                if paragraph:
                    lines.append(" ".join(paragraph))
                    paragraph = []
                lines.append(marked if marked.startswith("- ") else f"- {marked}")
            else:
                paragraph.append(marked)
            previous = sentence
        if paragraph:
            lines.append(" ".join(paragraph))
        for citation in citations:
            self._verify(citation)
        return Composition(answer=_join(lines), answered=True, citations=citations)

    def _citation(self, n: int, candidate: _Candidate) -> Citation:
        meta = candidate.passage.metadata
        return Citation(
            n=n,
            source_id=meta["source_id"],
            source_title=meta["source_title"],
            section=meta["section"],
            url=meta["url"] or None,
            quote=candidate.sentence.text,
        )

    def _verify(self, citation: Citation) -> None:
        if citation.quote not in self._corpus.text_of(citation.source_id):
            raise AssistantError(
                f"A quote for [{citation.n}] does not match its source text; the answer was withheld. "
                "Rebuild the index with 'assistant index --force'."
            )


def _bigrams(text: str) -> set[tuple[str, str]]:
    tokens = content_tokens(text)
    return set(itertools.pairwise(tokens))


def _adjacent(a: Sentence, b: Sentence) -> bool:
    if a.source_id != b.source_id or a.section != b.section:
        return False
    first, second = (a, b) if a.start < b.start else (b, a)
    return second.start - first.end <= 3


def _join(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        if out and not (line.startswith("- ") and out[-1].startswith("- ")):
            out.append("")
        out.append(line)
    return "\n".join(out)
