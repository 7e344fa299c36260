"""Guardrails around every answer, whatever composed it.

Before: the question is normalised (NFKC, no control or invisible characters,
look-alike letters inside a Latin word mapped to the Latin ones they imitate),
capped in length, and stripped of the parts aimed at the assistant itself
("ignore your instructions", "drop the disclaimer", "act as my lawyer"), which
change nothing: by the classifier fitted on labelled messages
(:mod:`assistant.requests_filter`, the default), or by the rule list in
``data/injection.yaml`` when ``request_filter`` is ``rules``. After: escalation notices for the user's situation and the
article's Legal Disclaimer are attached, and the reply is rendered with every
piece of text escaped, so nothing comes back as live HTML.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import yaml
from confusable_homoglyphs import categories, confusables

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
    """Requests aimed at the assistant itself, from ``data/injection.yaml`` (the default filter)."""
    data = yaml.safe_load(resources.files("assistant").joinpath("data/injection.yaml").read_text("utf-8"))
    return [re.compile(p, re.IGNORECASE) for p in data["patterns"]]


_WORD = re.compile(r"\w+")


@cache
def _latin_lookalike(char: str) -> str:
    """The Latin letter ``char`` imitates (Unicode's confusables data), or ``char`` itself."""
    if categories.alias(char) in {"LATIN", "COMMON"}:
        return char
    found = confusables.is_confusable(char, greedy=True, preferred_aliases=["latin"]) or []
    latin = [
        str(glyph["c"])
        for entry in found
        for glyph in entry["homoglyphs"]
        if len(glyph["c"]) == 1 and glyph["n"].startswith("LATIN")
    ]
    if not latin:
        return char
    # TR 39's skeletons fold "I" into "l" (they look alike); a capital that imitates "l" imitates "I".
    return "I" if latin[0] == "l" and char.isupper() else latin[0]


def _unmix_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if word.isascii():
        return word  # ASCII letters are all Latin (most words; looking each letter up cost about a millisecond a turn)
    scripts = {categories.alias(char) for char in word if char.isalpha()}
    if "LATIN" not in scripts or len(scripts - {"COMMON"}) < 2:
        return word  # one script: a Greek or Russian word stays as written
    return "".join(_latin_lookalike(char) for char in word)


def unmix_scripts(text: str) -> str:
    """Map look-alike letters to Latin in words that mix Latin with another script.

    Unicode TR 39's mixed-script confusables: "Sроtіfу", with Cyrillic р, о, і and у, is "Spotify". A word in
    one script is left alone, so Greek, Russian or any other language reads as written.
    """
    return text if text.isascii() else _WORD.sub(_unmix_word, text)


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
    """NFKC-normalise, drop control and invisible characters (line breaks become spaces), unmix scripts."""
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = "".join(" " if unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"} else ch for ch in text)
    return _SPACES.sub(" ", unmix_scripts(text)).strip()


def clean_lines(text: str) -> str:
    """:func:`clean_text` line by line, keeping the line breaks (where a message's pieces begin and end)."""
    lines = (clean_text(line) for line in re.split(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]", text))
    return "\n".join(line for line in lines if line)


def strip_injections(text: str) -> tuple[str, bool]:
    """Remove instructions aimed at the assistant by the rule list; report whether any were found."""
    found = False
    for pattern in _injections():
        text, count = pattern.subn(" ", text)
        found = found or count > 0
    return _SPACES.sub(" ", text).strip(" .,:;-"), found


Splitter = Callable[[str], tuple[str, bool]]
"""A message without its pieces aimed at the assistant, and whether it had any
(:meth:`assistant.requests_filter.RequestFilter.split`)."""


def check_question(question: object, max_chars: int, requests: Splitter | None = None) -> CheckedInput:
    """Validate and clean the question, and drop what is aimed at the assistant; never raises.

    ``requests``: the learned request filter (the default); without it (``ASSISTANT_REQUEST_FILTER=rules``), the
    rule list.
    """
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
    remaining, injected = requests(clean_lines(question)) if requests is not None else strip_injections(cleaned)
    remaining = _SPACES.sub(" ", _HTML_TAG.sub(" ", remaining)).strip(" .,:;-")
    return CheckedInput(remaining, notices=[INJECTION_NOTICE] if injected else [])


def render(answer: Answer) -> str:
    """The whole reply as a user sees it, as Markdown: answer, sources, notes, notices, disclaimer (always last)."""
    return markdown(reply_blocks(answer))


def guard(answer: Answer, escalations: list[Escalation], disclaimer: str, notices: list[str]) -> Answer:
    """Attach the notices and the disclaimer, and render; the last step of every reply."""
    guarded = answer.model_copy(update={"escalations": escalations, "disclaimer": disclaimer, "notices": notices})
    blocks = reply_blocks(guarded)
    return guarded.model_copy(update={"rendered": markdown(blocks), "blocks": blocks})
