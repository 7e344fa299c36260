"""Guardrails around every answer, whatever composed it.

Before: the question is normalised (NFKC, no control or invisible characters),
capped in length, and stripped of instructions aimed at the assistant itself
("ignore your instructions", "drop the disclaimer", "act as my lawyer"), which
change nothing. After: escalation notices for the user's situation and the
article's Legal Disclaimer are attached, and the reply is rendered with every
piece of text escaped, so nothing comes back as live HTML.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml

from assistant.presentation import markdown, reply_blocks
from assistant.schemas import Answer, Escalation, InputProblem

# Characters that render as nothing or reorder text: zero-width, bidi controls, BOM, soft hyphen.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]"
)
_SPACES = re.compile(r"[ \t]+")


@cache
def _injections() -> list[re.Pattern[str]]:
    """Requests aimed at the assistant itself, from ``data/injection.yaml``."""
    data = yaml.safe_load(resources.files("assistant").joinpath("data/injection.yaml").read_text("utf-8"))
    return [re.compile(p, re.IGNORECASE) for p in data["patterns"]]


_HTML_TAG = re.compile(r"<\s*(script|style)\b.*?</\s*\1\s*>|<\s*/?\s*[a-zA-Z][^>]*>", re.IGNORECASE | re.DOTALL)

INJECTION_NOTICE = (
    "Requests to change how this assistant works (its instructions, the disclaimer, the lawyer notices, "
    "or acting as your lawyer) are ignored; it only answers from the article and its cited sources."
)


@dataclass(frozen=True)
class CheckedInput:
    """A question made safe to process, and what the guard noticed on the way."""

    question: str
    problem: InputProblem | None = None
    message: str = ""
    notices: list[str] = field(default_factory=list)


def clean_text(text: str) -> str:
    """NFKC-normalise and drop control and invisible characters, keeping line breaks as spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} else ch for ch in text)
    return _SPACES.sub(" ", text).strip()


def strip_injections(text: str) -> tuple[str, bool]:
    """Remove instructions aimed at the assistant; report whether any were found."""
    found = False
    for pattern in _injections():
        text, count = pattern.subn(" ", text)
        found = found or count > 0
    text = _HTML_TAG.sub(" ", text)
    return _SPACES.sub(" ", text).strip(" .,:;-"), found


def check_question(question: object, max_chars: int) -> CheckedInput:
    """Validate and clean the question; never raises for what a user can type."""
    if not isinstance(question, str):
        return CheckedInput("", "empty", "Please type a question as text.")
    cleaned = clean_text(question)
    if len(cleaned) > max_chars:
        return CheckedInput(
            "",
            "too_long",
            f"Your question is {len(cleaned):,} characters long; the limit is {max_chars:,}. "
            "Please shorten it to the part you want answered and ask again.",
        )
    if not re.search(r"\w", cleaned):
        return CheckedInput("", "empty", "Please type a question about AI stem separation and the law.")
    remaining, injected = strip_injections(cleaned)
    return CheckedInput(remaining, notices=[INJECTION_NOTICE] if injected else [])


def render(answer: Answer) -> str:
    """The whole reply as a user sees it, as Markdown: answer, sources, notes, notices, disclaimer (always last)."""
    return markdown(reply_blocks(answer))


def guard(answer: Answer, escalations: list[Escalation], disclaimer: str, notices: list[str]) -> Answer:
    """Attach the notices and the disclaimer, and render; the last step of every reply."""
    guarded = answer.model_copy(update={"escalations": escalations, "disclaimer": disclaimer, "notices": notices})
    blocks = reply_blocks(guarded)
    return guarded.model_copy(update={"rendered": markdown(blocks), "blocks": blocks})
