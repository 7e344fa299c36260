"""The default answer composer: verbatim quotes of the corpus, each cited.

:class:`ExtractiveComposer` needs no generative model: it finds the sentence
of the retrieved passages that best answers the question, quotes its
paragraph whole when that is short (the article makes one point a
paragraph), adds the best sentence of the next-ranked sections that answer
nearly as well, and fills the room left from the sections quoted. Quotes are
verbatim, so each sentence carries a ``[n]`` marker and each citation's quote
is an exact slice of its corpus file (checked before it is returned). Quoting
whole sentences keeps the article's hedges ("arguably", "not airtight") with
the claims they qualify.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.documents import Document

from assistant.answer import Composition, CompositionRequest, distinct_sections, not_covered
from assistant.corpus import DISCLAIMER_HEADING, ESCALATION_HEADING, SOURCES_HEADING, Corpus
from assistant.errors import AssistantError
from assistant.query import content_tokens
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
_ASKS_FOR_A_LIST = re.compile(
    r"\b(?:list|checklist|situations|sources|cite[sd]?|steps|summari[sz]e|all the|every|five|"
    r"what are the|which are the)\b",
    re.IGNORECASE,
)
_DEFINED_TERM = re.compile(r"^(?:An?|The|A person’s)?\s*“([^”]+)”")
_LIST_ITEM = re.compile(r"^(?:- |\(\w{1,4}\) |\d+\. )")
_LEAD_IN = ("—", ":", "following")
_ASKS_ABOUT_LAWYERS = re.compile(r"\b(?:lawyer|attorney|solicitor|counsel|legal (?:help|advice)|professional)", re.I)


@dataclass(frozen=True)
class _Candidate:
    sentence: Sentence
    score: float
    passage: Document
    similarity: float = 0.0
    situation: float = 0.0
    """Similarity to the closest 'When to Ask a Lawyer' bullet matching the user's situation."""


class ExtractiveComposer:
    """Quotes the best-matching sentences of the retrieved passages, verbatim and cited."""

    # Calibrated on the known-question set: below these, the passages do not answer the question.
    min_passage_score = 0.55
    min_sentence_similarity = 0.22
    # How far below the best sentence another may score and still be included: close for
    # the best section's context, wider for the best sentence of the next-ranked sections.
    margin = 0.3
    section_margin = 0.4
    leader_similarity = 0.3
    # A bullet this close to the user's situation is the one that applies to it: it always leads.
    # Each bullet scores 0.74-0.89 against its own trigger (its stored vector carries the heading),
    # at most 0.60 against another's.
    bullet_situation = 0.7
    max_leaders = 2
    further_leader_margin = 0.3
    max_quotes = 3
    # How far below the best sentence a list item may score and still answer a question asking for a list.
    list_margin = 0.15
    # How much the retriever's ranking of a sentence's passage counts against the sentence's own match.
    passage_weight = 0.6
    # A sentence this short states a topic; the next one says what it is.
    topic_sentence_chars = 90
    # A paragraph this small is quoted whole: the article makes one point a paragraph, and its
    # key sentence is often not the one that matches the question's wording best.
    paragraph_sentences = 4
    paragraph_chars = 650

    # A sentence's match counts with its paragraph's: the article's key sentence is often a short one
    # ("The output is not the original isolated track.") whose paragraph says what it is about.
    sentence_weight = 0.7
    paragraph_weight = 0.3
    lexical_weight = 0.35
    situation_weight = 1.0
    # The other related sections count, but less: "releasing a track" is first a matter of practical risk.
    related_situation_weight = 0.5

    def __init__(
        self, corpus: Corpus, sentences: SentenceBank, max_sentences: int = 5, idf: Mapping[str, float] | None = None
    ) -> None:
        self._corpus = corpus
        self._sentences = sentences
        self._max_sentences = max_sentences
        self._idf = idf or {}

    def _weighted_overlap(self, terms: set[str], tokens: set[str]) -> float:
        """Share of the question's terms found in a sentence, rare terms counting more than common ones."""
        if not terms:
            return 0.0
        weights = {t: max(self._idf.get(t, 1.0), 0.1) for t in terms}
        return sum(w for t, w in weights.items() if t in tokens) / sum(weights.values())

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
            in_context = self._sentences.paragraph_similarities(chunk_id, request.query_vector)
            situations = (
                np.max(np.stack([self._sentences.similarities(chunk_id, v) for v in request.situation_vectors]), axis=0)
                if request.situation_vectors is not None and len(request.situation_vectors)
                else None
            )
            for index, (sentence, similarity, paragraph_similarity) in enumerate(
                zip(self._sentences.sentences(chunk_id), similarities, in_context, strict=True)
            ):
                if sentence.text.strip() in request.query.already_said or len(sentence.text) < 12:
                    continue
                tokens = set(content_tokens(sentence.text))
                lexical = self._weighted_overlap(terms, tokens)
                focused = len(focus & tokens) / len(focus) if focus else 0.0
                phrase = 0.1 if phrases & _bigrams(sentence.text) else 0.0
                # The bullets of a situation lead only after the substance (see _select), never before it.
                preferred = (
                    sentence.section in request.query.preferred_sections and sentence.section != ESCALATION_HEADING
                )
                passage = float(doc.metadata["score"]) - top
                if situations is not None and preferred:
                    # The retriever ranked by the question's wording; for a user in a situation the
                    # sections that speak to it count in full, however their passages ranked.
                    passage = 0.0
                section_bonus = 0.15 if preferred else 0.0
                if sentence.section == ESCALATION_HEADING and not asks_about_lawyers:
                    section_bonus -= 0.1  # its bullets reach the user as notices when they apply
                score = (
                    self.sentence_weight * float(similarity)
                    + self.paragraph_weight * float(paragraph_similarity)
                    + self.lexical_weight * lexical
                    + 0.25 * focused
                    + phrase
                    + section_bonus
                    + self.passage_weight * passage
                )
                if situations is not None:
                    # The user's situation leads: what the sections that speak to it say about it.
                    weight = (
                        self.situation_weight
                        if sentence.section in request.query.primary_sections
                        else self.related_situation_weight
                        if preferred
                        else 0.2
                    )
                    score += weight * float(situations[index])
                if request.query.wants_definition and _defines(sentence.text, terms):
                    score += 0.35  # "How does the Act define sound recordings?" -> the definition itself
                situated = float(situations[index]) if situations is not None else 0.0
                candidates.append(_Candidate(sentence, score, doc, float(similarity), situated))
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

    def _select(
        self,
        candidates: list[_Candidate],
        passages: Sequence[Document],
        wants_list: bool = False,
        never_leads: frozenset[str] = frozenset(),
    ) -> list[_Candidate]:
        # A section that may not lead gives no best sentence either: the answer would open with it.
        eligible = [c for c in candidates if c.sentence.section not in never_leads] or candidates
        best = eligible[0]
        never_leads |= {DISCLAIMER_HEADING}  # appended to every reply: never a further part of one
        if wants_list and not _LIST_ITEM.match(best.sentence.text):
            # Asked for a list ("in which situations…"): a list that answers nearly as well is the answer.
            best = next(
                (c for c in eligible if _LIST_ITEM.match(c.sentence.text) and c.score >= best.score - self.list_margin),
                best,
            )
        chosen = [best]

        def add(candidate: _Candidate, reserve: int | None = None) -> None:
            room = self._max_sentences - (len(leaders) if reserve is None else reserve)
            if len(chosen) >= room or any(c.sentence == candidate.sentence for c in chosen):
                return
            if candidate.sentence.text.rstrip().endswith(_LEAD_IN) and candidate is not best:
                return  # a lead-in without its list says nothing
            chosen.append(candidate)

        by_sentence = {c.sentence: c for c in candidates}
        # The best sentence of each of the next-ranked sections, when it is relevant in its own right:
        # the answer then spans the sections that retrieval ranks highest.
        leaders: list[_Candidate] = []
        for section in distinct_sections(passages, 3 + len(never_leads)):
            leader = next((c for c in candidates if c.sentence.section == section), None)
            if leader is None or section == best.sentence.section or section in never_leads:
                continue
            if (
                leader.score >= best.score - self.section_margin
                or leader.similarity >= self.leader_similarity
                or self._applies(leader)
            ):
                leaders.append(leader)
        applying = next((c for c in candidates if self._applies(c)), None)
        if applying is not None and applying is not best and applying not in leaders:
            leaders.append(applying)  # the bullet for the user's situation, however its passage ranked
        # The bullet that applies to the user's situation comes first; then the next-ranked section, and
        # a further one only when it answers nearly as well: otherwise its room goes to the best section.
        bullets = [c for c in leaders if self._applies(c)]
        others = [c for c in leaders if c not in bullets]
        others = others[:1] + [c for c in others[1:] if c.score >= best.score - self.further_leader_margin]
        leaders = (bullets + others)[: self.max_leaders]
        paragraph = self._whole_paragraph(best)
        if paragraph:
            # Sentences said in earlier turns (or too short to stand) are not candidates: left out.
            chosen[:] = [by_sentence[s] for s in paragraph if s in by_sentence]
            for leader in leaders:
                add(leader, reserve=0)
                if len(leader.sentence.text) < self.topic_sentence_chars:
                    # "AI stem separation is similar in some respects." says what, the next sentence how.
                    for item in self._sentences.following(leader.sentence, 1):
                        if item in by_sentence and (item.chunk_id, item.paragraph) == (
                            leader.sentence.chunk_id,
                            leader.sentence.paragraph,
                        ):
                            add(by_sentence[item], reserve=0)
            # Room left: the best further sentences of the sections already quoted, bullets aside,
            # as long as the answer keeps to three quotes, so every section it spans is among its first three.
            quoted = {c.sentence.section for c in chosen}
            for candidate in candidates:
                if (
                    candidate.sentence.section in quoted
                    and candidate.sentence.section != ESCALATION_HEADING
                    and candidate.score >= best.score - self.margin
                    and _quote_count([*chosen, candidate]) <= self.max_quotes
                ):
                    add(candidate, reserve=0)
            return chosen
        # Asked for the list itself ("summarise the checklist"): give it in order, from its start.
        if wants_list and _LIST_ITEM.match(best.sentence.text):
            items = [
                s
                for s in self._sentences.section_run(best.sentence)
                if s.paragraph == best.sentence.paragraph
                and s.chunk_id == best.sentence.chunk_id
                and _LIST_ITEM.match(s.text)
            ]
            chosen.clear()
            for item in items[: self._max_sentences]:
                chosen.append(by_sentence.get(item, _Candidate(item, best.score, best.passage)))
            return chosen
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
        for leader in leaders:
            add(leader, reserve=0)
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

    @staticmethod
    def _never_leads(request: CompositionRequest) -> frozenset[str]:
        """Sections that answer only a question of their own kind, so may not open or lead a part of another's.

        A lawyer bullet is a situation: it answers a user in it, or one who asks about lawyers (a general
        "can producers sell such tracks?" is answered by the risks, not by "you plan to commercially
        release…"). The numbered Sources list answers a question about the article's references.
        """
        barred = set()
        if request.situation_vectors is None and not _ASKS_ABOUT_LAWYERS.search(request.query.text):
            barred.add(ESCALATION_HEADING)
        if not request.query.wants_sources:
            barred.add(SOURCES_HEADING)
        return frozenset(barred)

    def _applies(self, candidate: _Candidate) -> bool:
        """Whether the candidate is the 'When to Ask a Lawyer' bullet that matches the user's situation."""
        return candidate.sentence.section == ESCALATION_HEADING and candidate.situation >= self.bullet_situation

    def _whole_paragraph(self, best: _Candidate) -> list[Sentence]:
        """The best sentence's paragraph when it is a short run of prose that can be quoted whole."""
        if best.sentence.text.rstrip().endswith(_LEAD_IN):
            return []
        paragraph = self._sentences.paragraph(best.sentence)
        if (
            len(paragraph) < 2
            or len(paragraph) > min(self.paragraph_sentences, self._max_sentences)
            or sum(len(s.text) for s in paragraph) > self.paragraph_chars
            or any(_LIST_ITEM.match(s.text) for s in paragraph)
        ):
            return []
        return paragraph

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
        chosen = self._select(
            candidates,
            request.passages,
            wants_list=bool(_ASKS_FOR_A_LIST.search(request.query.original)),
            never_leads=self._never_leads(request),
        )
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
        bullet, list_section = "- ", ""
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
                item = marked.removeprefix("- ")
                if lines and lines[-1].startswith(("- ", "* ")) and not continues and list_section != sentence.section:
                    # An item of another section's list starts a list of its own: a new bullet
                    # character ends the previous list in Markdown, so it is not read as part of it.
                    bullet = "* " if lines[-1].startswith("- ") else "- "
                elif not (lines and lines[-1].startswith(("- ", "* "))):
                    bullet = "- "
                lines.append(bullet + item)
                list_section = sentence.section
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


def _defines(sentence: str, query_terms: set[str]) -> bool:
    """Whether the sentence is a § 101-style definition of a term the question names."""
    match = _DEFINED_TERM.match(sentence)
    return match is not None and set(content_tokens(match.group(1))) <= query_terms


def _bigrams(text: str) -> set[tuple[str, str]]:
    tokens = content_tokens(text)
    return set(itertools.pairwise(tokens))


def _adjacent(a: Sentence, b: Sentence) -> bool:
    if a.source_id != b.source_id or a.section != b.section:
        return False
    first, second = (a, b) if a.start < b.start else (b, a)
    return second.start - first.end <= 3


def _quote_count(chosen: Sequence[_Candidate]) -> int:
    """How many citations the chosen sentences make: one per run of adjacent sentences of a section."""
    sentences = sorted((c.sentence for c in chosen), key=lambda s: (s.source_id, s.section, s.start))
    return sum(1 for i, s in enumerate(sentences) if i == 0 or not _adjacent(sentences[i - 1], s))


def _join(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        if out and not (line[:2] in ("- ", "* ") and line[:2] == out[-1][:2]):
            out.append("")
        out.append(line)
    return "\n".join(out)
