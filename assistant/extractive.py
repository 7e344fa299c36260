"""The default answer composer: verbatim quotes of the corpus, each cited.

:class:`ExtractiveComposer` needs no generative model. It writes what a person would:

1. it leads with the sentence the fitted ranker rates most likely to answer the question;
2. then adds up to three supporting points: the next-ranked sentences the ranker rates above its
   support threshold (fitted by cross-validation), or, when none is, the best further sentence of the
   lead's own section, which gives the lead its context;
3. when the question asks for a whole list (a fitted decision) and the lead is an item of one, the
   whole list is the answer, in order;
4. a claim keeps the article's qualification of it ("arguably a derivative work" brings "The argument
   is not airtight"); the bullet of the user's situation is left to the notice the guardrails attach,
   so it is shown once.

Quotes are verbatim, so each sentence carries a ``[n]`` marker and each citation's quote is an exact
slice of its corpus file (checked before it is returned). A paragraph's run-in label ("Whether you
get caught.") is shown as the lead-in of its sentence, never as a sentence of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from assistant.answer import Composition, CompositionRequest, closest_sections, not_covered
from assistant.corpus import Corpus
from assistant.decisions.judge import bullet_rows
from assistant.errors import AssistantError
from assistant.retrieval import Ranking
from assistant.schemas import Citation
from assistant.sentences import Sentence, SentenceTable

# Qualifications of a whole claim, in the article's words: when the claim is quoted, these come along.
_STRONG_HEDGE = re.compile(
    r"\b(?:not airtight|not clearly resolved|untested|not been tested|not (?:yet )?settled|unclear|uncertain)\b",
    re.IGNORECASE,
)
HEDGE_REACH = 2
"""How many sentences after a claim its qualification may come ("… arguably a derivative work. It is derived
from … The argument is not airtight"): the article qualifies a claim within its next two sentences."""


class ExtractiveComposer:
    """Quotes the ranked sentences, verbatim and cited."""

    def __init__(
        self,
        corpus: Corpus,
        table: SentenceTable,
        support_threshold: float,
        max_support: int = 3,
        max_list_items: int = 10,
    ) -> None:
        self._corpus = corpus
        self._table = table
        self._support_threshold = support_threshold
        self._max_support = max_support
        self._max_list_items = max_list_items
        self._bullets = list(bullet_rows(table).values())

    def compose(self, request: CompositionRequest) -> Composition:
        """Pick, order and cite sentences; or say the corpus does not cover the question."""
        judgement = request.judgement
        if not judgement.covered or not len(judgement.ranking.rows):
            return not_covered(closest_sections(self._table, judgement))
        points = self._points(request)
        # The bullet of the user's situation is shown once, as the notice the guardrails attach, not quoted in
        # the answer too; only when it is all the ranking has to say does the answer quote it.
        kept = [[r for r in point if r not in request.situation_rows] for point in points]
        points = [point for point in kept if point] or points
        return self._cite([self._table.sentences[row] for point in points for row in point])

    def _points(self, request: CompositionRequest) -> list[list[int]]:
        """Rows to quote, as points: the lead first, then the supporting points, each with its hedge."""
        ranking = request.judgement.ranking
        # In a situation, no bullet is quoted: the one that applies is the notice, and beside it another bullet
        # would read as advice for this user.
        bullets = self._bullets if request.situation_rows else []
        substance = ~np.isin(ranking.rows, bullets)
        if substance.any():
            ranking = Ranking(ranking.rows[substance], ranking.probabilities[substance], ranking.features[substance])
        table = self._table
        lead = table.sentences[int(ranking.rows[0])]
        if request.judgement.wants_list and (lead.is_item or lead.is_lead_in):
            items = table.list_of(lead)
            if len(items) > 1:
                return [[s.row for s in items[: self._max_list_items]]]
        supports = [
            int(row)
            for row, probability in zip(ranking.rows[1:], ranking.probabilities[1:], strict=True)
            if probability >= self._support_threshold
        ][: self._max_support]
        if not supports:
            # Nothing else clears the support threshold: the lead's own section gives it its context.
            supports = [int(r) for r in ranking.rows[1:] if table.section_of[int(r)] == table.section_of[lead.row]][:1]
        points: list[list[int]] = []
        for row in [lead.row, *supports]:
            sentence = table.sentences[row]
            near = next((p for p in points if any(_adjacent(table.sentences[r], sentence) for r in p)), None)
            if near is not None:
                near.append(row)
                near.sort(key=lambda r: table.sentences[r].start)
            elif all(row not in p for p in points):
                points.append([row])
        for point in points:
            point[:] = self._with_hedge(point)
        return points

    def _with_hedge(self, rows: list[int]) -> list[int]:
        """The point's rows, with the qualification that follows its last claim in the same paragraph."""
        last = self._table.sentences[rows[-1]]
        run = [s for s in self._table.following(last, HEDGE_REACH) if s.paragraph == last.paragraph]
        hedge = next((i for i, s in enumerate(run) if _STRONG_HEDGE.search(s.text)), None)
        if hedge is None:
            return rows
        return [*rows, *(s.row for s in run[: hedge + 1] if s.row not in rows)]

    def _cite(self, chosen: Sequence[Sentence]) -> Composition:
        citations: list[Citation] = []
        starts: list[int] = []
        lines: list[str] = []
        paragraph: list[str] = []
        previous: Sentence | None = None
        for sentence in _deduplicated(chosen):
            text = self._corpus.text_of(sentence.source_id)
            continues = (
                previous is not None
                and previous.section == sentence.section
                and previous.source_id == sentence.source_id
                and previous.end <= sentence.start
                and not text[previous.end : sentence.start].strip()
            )
            if continues:
                # Consecutive sentences share one citation whose quote spans them.
                citations[-1] = citations[-1].model_copy(update={"quote": text[starts[-1] : sentence.end]})
            else:
                if paragraph:
                    lines.append(" ".join(paragraph))
                    paragraph = []
                citations.append(self._citation(len(citations) + 1, sentence))
                starts.append(sentence.start)
            marked = f"{_shown(sentence)} [{citations[-1].n}]"
            if sentence.is_list_item:
                if paragraph:
                    lines.append(" ".join(paragraph))
                    paragraph = []
                lines.append("- " + marked.removeprefix("- "))
            else:
                paragraph.append(marked)
            previous = sentence
        if paragraph:
            lines.append(" ".join(paragraph))
        for citation in citations:
            self._verify(citation)
        return Composition(answer=_join(lines), answered=True, citations=citations)

    def _citation(self, n: int, sentence: Sentence) -> Citation:
        section = self._corpus.section(sentence.source_id, sentence.section)
        return Citation(
            n=n,
            source_id=sentence.source_id,
            source_title=section.source.title,
            section=sentence.section,
            url=section.url,
            quote=sentence.text,
        )

    def _verify(self, citation: Citation) -> None:
        if citation.quote not in self._corpus.text_of(citation.source_id):
            raise AssistantError(
                f"A quote for [{citation.n}] does not match its source text; the answer was withheld. "
                "Rebuild the index with 'assistant index --force'."
            )


def _shown(sentence: Sentence) -> str:
    """The sentence as the answer shows it: a run-in label as its bold lead-in."""
    text = sentence.text.strip()
    if sentence.label and text.startswith(sentence.label):
        return f"**{sentence.label}** {text[len(sentence.label) :].lstrip()}"
    return text


def _deduplicated(chosen: Sequence[Sentence]) -> list[Sentence]:
    seen: set[int] = set()
    out = []
    for sentence in chosen:
        if sentence.row not in seen:
            seen.add(sentence.row)
            out.append(sentence)
    return out


def _adjacent(a: Sentence, b: Sentence) -> bool:
    """Neighbours in one paragraph."""
    return a.paragraph == b.paragraph and abs(a.position - b.position) == 1


def _join(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        if out and not (line.startswith("- ") and out[-1].startswith("- ")):
            out.append("")
        out.append(line)
    return "\n".join(out)
