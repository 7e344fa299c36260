"""Multi-turn: turn a follow-up into a question that stands on its own.

"What about Spotify?" after a question about YouTube, "why?", "and in the
EU?" or "tell me more about the second one" carry too little to retrieve on;
the earlier turns supply the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from assistant.query import content_tokens
from assistant.schemas import Message

_ORDINALS = {
    "first": 1,
    "1st": 1,
    "second": 2,
    "2nd": 2,
    "third": 3,
    "3rd": 3,
    "fourth": 4,
    "4th": 4,
    "fifth": 5,
    "5th": 5,
    "last": -1,
    "final": -1,
}
_ORDINAL_REF = re.compile(
    r"\b(?P<ordinal>first|1st|second|2nd|third|3rd|fourth|4th|fifth|5th|last|final)\b(?:\s+(?:one|point|option|"
    r"item|thing|source|alternative|suggestion|idea|bit|part))?|\b(?:number|no\.?|#|point|option)\s*(?P<number>[1-5])\b",
    re.IGNORECASE,
)
_FOLLOW_UP_OPENERS = re.compile(
    r"^\s*(?:and|but|so|also|what about|how about|what if|why|how come|how so|really|then|ok(?:ay)?|same|"
    r"tell me more|more on|more about|elaborate|explain|expand|go on|continue|can you expand|what else|"
    r"is that|does that|would that|will that|could that|isn't that|doesn't that|what should i do|what now|"
    r"what do i do|any(?:thing)? else|in that case|and if|even if)\b",
    re.IGNORECASE,
)
_ANAPHORA = re.compile(r"\b(?:it|that|this|they|them|those|these|there|one|ones|he|she|its|their)\b", re.IGNORECASE)
_MORE = re.compile(r"\b(?:more|elaborate|expand|explain|details?|else|go on|continue)\b", re.IGNORECASE)
_INLINE_NUMBER = re.compile(r"(?:^|(?<=[\s,;:]))\(?[1-9][.)]\s+")
_INLINE_SEPARATOR = re.compile(r",\s*(?:and\s+|or\s+)?|;\s*|\s+and\s+")
_MARKED_SENTENCE = re.compile(r"[^.!?\n]*?[^\s][^\n]*?\[\d+\]")


@dataclass(frozen=True)
class ResolvedQuestion:
    """What to retrieve for, and what the user has already been told."""

    query: str
    is_follow_up: bool = False
    already_said: frozenset[str] = field(default_factory=frozenset)


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
        messages.append(Message(role=item["role"], content=item["content"]))
    return messages


def answer_body(content: str) -> str:
    """The answer part of an earlier assistant reply (without notices, sources and disclaimer)."""
    for separator in ("\n**When to ask a lawyer", "\n**Sources**", "\n---", "\n*Requests to change"):
        content = content.split(separator, 1)[0]
    return content


def _answer_items(content: str) -> list[str]:
    """The marked sentences or list items of an earlier answer, in order."""
    body = answer_body(content)
    lines = [line.strip(" -*•") for line in body.splitlines() if line.strip()]
    if len(lines) > 1:
        return lines
    return [m.group(0).strip() for m in _MARKED_SENTENCE.finditer(body)] or lines


def _inline_items(content: str) -> list[str]:
    """The items of a list written inline: "1) license the multitrack, 2) use …" or "five: a, b, c and d"."""
    body = _strip_markers(answer_body(content))
    numbered = [
        re.sub(r"\s+(?:and|or)$", "", item.strip(" ,;.")).strip(" ,;") for item in _INLINE_NUMBER.split(body)[1:]
    ]
    if len(numbered) >= 2:
        return numbered
    _, colon, listed = body.rpartition(":")
    items = [item.strip(" .") for item in _INLINE_SEPARATOR.split(listed)] if colon else []
    return [item for item in items if item] if len(items) >= 3 else []


def _strip_markers(text: str) -> str:
    return re.sub(r"\s*\[\d+\]", "", text).strip()


def resolve(question: str, history: Sequence[Message]) -> ResolvedQuestion:
    """A standalone retrieval query for the question, using earlier turns when it is a follow-up."""
    earlier_users = [m.content for m in history if m.role == "user"]
    earlier_answers = [m.content for m in history if m.role == "assistant"]
    if not earlier_users and not earlier_answers:
        return ResolvedQuestion(question)
    previous_answer = earlier_answers[-1] if earlier_answers else ""
    said = (
        frozenset(_strip_markers(item) for item in _answer_items(previous_answer)) if previous_answer else frozenset()
    )

    ordinal = _ORDINAL_REF.search(question)
    if ordinal and previous_answer:
        items = _answer_items(previous_answer)
        index = _ORDINALS.get((ordinal.group("ordinal") or "").lower()) or int(ordinal.group("number") or 0)
        if len(items) < max(index, 2):
            # A list written in one sentence (a reply not from this assistant, or a user's own summary).
            items = _inline_items(previous_answer) or items
        if items and index:
            position = index - 1 if index > 0 else len(items) - 1
            if 0 <= position < len(items):
                return ResolvedQuestion(_strip_markers(items[position]), True, said)

    terms = content_tokens(question)
    short = len(terms) <= 3
    follow_up = (
        bool(_FOLLOW_UP_OPENERS.search(question)) or (short and bool(_ANAPHORA.search(question))) or len(terms) <= 1
    )
    if not follow_up or not earlier_users:
        return ResolvedQuestion(question)
    # The new words lead so they weigh most; the earlier question supplies the topic.
    query = f"{question} {earlier_users[-1]}"
    return ResolvedQuestion(query, True, said if _MORE.search(question) else frozenset())
