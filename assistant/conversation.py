"""Multi-turn: what a message follows up, read from the structured earlier turns.

A follow-up ("what about for DJ sets?", "tell me more about the second one") is
matched in the context of the user's previous message, or of the item of the
previous answer it points at. The previous answer is known by its citations
(sent back with the history, or looked up by its ``answer_id``), never by
parsing the rendered reply; its quoted sentences are not offered again, so a
follow-up gets an answer to the follow-up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from assistant.features import QueryView
from assistant.query import QueryPreparer
from assistant.schemas import Citation, Message
from assistant.sentences import Sentence, SentenceTable

_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "last": -1, "final": -1}
_ORDINAL_REF = re.compile(
    r"\b(?:the\s+)?(?P<ordinal>first|second|third|fourth|fifth|last|final|[1-5](?:st|nd|rd|th))\s+"
    r"(?:one|point|option|item|thing|source|alternative|suggestion|idea|bit|part|factor|bullet|step)\b"
    r"|\b(?:number|no\.?|#|point|option|item)\s*(?P<number>[1-5])\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class EarlierAnswer:
    """The previous reply, as the rows of the sentences it quoted (in the order it quoted them)."""

    rows: tuple[int, ...] = ()


def parse_history(raw: Sequence[object]) -> list[Message]:
    """Validate history items; raises ValueError with the position of a bad item."""
    messages: list[Message] = []
    for position, item in enumerate(raw, start=1):
        if isinstance(item, Message):
            messages.append(item)
            continue
        if (
            not isinstance(item, dict)
            or item.get("role") not in ("user", "assistant")
            or not isinstance(item.get("content"), str)
        ):
            raise ValueError(
                f"history item {position} must be an object with 'role' ('user' or 'assistant') and 'content' (text)"
            )
        try:
            messages.append(Message.model_validate(item))
        except ValueError:
            raise ValueError(f"history item {position} has a malformed 'answer_id' or 'citations'") from None
    return messages


def quoted_rows(table: SentenceTable, citations: Sequence[Citation]) -> tuple[int, ...]:
    """The table rows inside each citation's quote, in citation order."""
    rows: list[int] = []
    for citation in citations:
        for sentence in table.sentences:
            if sentence.source_id == citation.source_id and sentence.text in citation.quote:
                rows.append(sentence.row)
    return tuple(dict.fromkeys(rows))


def earlier_answer(
    table: SentenceTable, turns: Sequence[Message], lookup: Callable[[str], Sequence[Citation] | None]
) -> EarlierAnswer:
    """The last assistant turn's quoted sentences: from its citations, or from the answer its id names."""
    for turn in reversed(turns):
        if turn.role != "assistant":
            continue
        citations: Sequence[Citation] | None = turn.citations
        if citations is None and turn.answer_id is not None:
            citations = lookup(turn.answer_id)
        return EarlierAnswer(quoted_rows(table, citations or []))
    return EarlierAnswer()


def points_at_an_item(question: str) -> bool:
    """Whether the question points at an item of the previous answer ("the second one", "number 3")."""
    return _ORDINAL_REF.search(question) is not None


def referenced_item(question: str, answer: EarlierAnswer, table: SentenceTable) -> Sentence | None:
    """The item of the previous answer that "the second one" points at, if the question does.

    The items are what the answer quoted, in order, each list or labelled paragraph counted once per item.
    """
    match = _ORDINAL_REF.search(question)
    if match is None or not answer.rows:
        return None
    word = (match.group("ordinal") or "").lower()
    index = _ORDINALS.get(word) or int(match.group("number") or word[:1] or 0)
    items = _items(answer, table)
    position = index - 1 if index > 0 else len(items) - 1
    if not 0 <= position < len(items):
        return None
    return items[position]


def _items(answer: EarlierAnswer, table: SentenceTable) -> list[Sentence]:
    """The previous answer's points: its list items when it quoted a list, else each paragraph it quoted."""
    sentences = [table.sentences[row] for row in answer.rows]
    listed = [s for s in sentences if s.is_item]
    if len(listed) >= 2:
        return listed
    firsts: dict[tuple[str, int], Sentence] = {}
    for sentence in sentences:
        firsts.setdefault(sentence.paragraph, sentence)
    return list(firsts.values())


def user_messages(turns: Sequence[Message]) -> list[str]:
    """The user's earlier messages, oldest first."""
    return [turn.content for turn in turns if turn.role == "user"]


CONVERSATION_TURNS = 3
"""Earlier user messages read with a message to tell the user's situation. By cross-validation on the bank
(grouped by author), the message with its three predecessors tells situations better (F1 0.90) than with
only the previous one (0.87): a situation is often told two or three messages before a question."""


def conversation(message: str, earlier: Sequence[str]) -> str:
    """The message followed by the user's earlier messages, newest first."""
    return " \n ".join([message, *reversed(earlier[-CONVERSATION_TURNS:])])


@dataclass(frozen=True)
class TurnRequest:
    """One user message to be seen by the decisions, with what it follows up."""

    message: str
    earlier: tuple[str, ...] = ()
    """The user's earlier messages in this chat, oldest first."""
    reference: str | None = None
    """The text of the earlier answer's item the message points at ("the second one"), if any: the message is
    then read as standing alone with it ("tell me more about the second one: <item>")."""
    excluded_rows: frozenset[int] = frozenset()


class ViewBuilder:
    """Turns user messages into :class:`QueryView`s: prepared text, context and embeddings (batched, cached)."""

    def __init__(self, preparer: QueryPreparer, embed: Callable[[list[str]], list[list[float]]], cache: int = 4096):
        self._preparer = preparer
        self._embed = embed
        self._cache: dict[str, np.ndarray] = {}
        self._cache_size = cache

    def vectors(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Embeddings of the texts, each distinct text embedded once (and remembered)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            if len(self._cache) + len(missing) > self._cache_size:
                self._cache.clear()
            for text, vector in zip(missing, self._embed(missing), strict=True):
                array = np.asarray(vector, dtype=np.float32)
                array.setflags(write=False)
                self._cache[text] = array
        return {t: self._cache[t] for t in texts}

    def clear(self) -> None:
        """Forget remembered embeddings (benchmarks measure embedding anew)."""
        self._cache.clear()

    def views(self, requests: Sequence[TurnRequest]) -> list[QueryView]:
        """One view per request; all the texts they need are embedded in one batch."""
        messages = [f"{r.message} {r.reference}" if r.reference else r.message for r in requests]
        prepared = [self._preparer.prepare(message) for message in messages]
        contexts = []
        for request, query in zip(requests, prepared, strict=True):
            before = None if request.reference or not request.earlier else request.earlier[-1]
            contexts.append(f"{query.text} {self._preparer.prepare(before).text}" if before else query.text)
        vectors = self.vectors([q.text for q in prepared] + contexts)
        return [
            QueryView(
                message=message,
                text=query.text,
                context=context,
                conversation=conversation(request.message, request.earlier),
                vector=vectors[query.text],
                context_vector=vectors[context],
                statute_sections=query.statute_sections,
                treaty_articles=query.treaty_articles,
                excluded_rows=request.excluded_rows,
            )
            for request, message, query, context in zip(requests, messages, prepared, contexts, strict=True)
        ]
