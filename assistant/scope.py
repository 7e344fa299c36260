"""What the corpus does not cover, said plainly and with the reason.

Similarity alone cannot tell "how long does copyright in a sound recording
last in the EU?" (not covered: the statute held does not set the term) from a
question the article answers, because both share its words. Topics the corpus
is known not to cover are listed in ``data/scope.yaml``; sources the article
cites only by a homepage are known from ``sources.yaml``, and nothing may be
attributed to them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import yaml

from assistant.corpus import Corpus

_ASKS_WHAT_IT_SAYS = re.compile(
    r"\b(?:conclu\w*|say|says|said|argue\w*|claim\w*|find|finds|found|report\w*|according to|think|recommend\w*|"
    r"position|view|analysis|write|wrote|state\w*)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class OutOfScope:
    """Why a question is not covered."""

    topic: str
    reason: str


class ScopeCheck:
    """Recognises questions about topics the corpus does not cover."""

    def __init__(self, corpus: Corpus) -> None:
        data = yaml.safe_load(resources.files("assistant").joinpath("data/scope.yaml").read_text("utf-8"))
        self._topics = [
            (
                name,
                topic["reason"],
                [re.compile(p, 0 if topic.get("case_sensitive") else re.IGNORECASE) for p in topic["patterns"]],
            )
            for name, topic in data["topics"].items()
        ]
        # "Billboard — The Legal Gray Area of AI Music Tools" is known by its publisher's name.
        self._textless = [
            (source.title.split(" — ")[0], re.compile(rf"\b{re.escape(source.title.split(' — ')[0])}\b", re.IGNORECASE))
            for source in corpus.sources
            if not source.has_text
        ]

    def check(self, question: str) -> OutOfScope | None:
        """The reason the question is out of scope, or None when the corpus may cover it."""
        for name, pattern in self._textless:
            if pattern.search(question) and _ASKS_WHAT_IT_SAYS.search(question):
                return OutOfScope(
                    "uncollected_source",
                    f"The article cites {name} only by its homepage; none of its text is held, "
                    "so nothing can be attributed to it.",
                )
        for name, reason, patterns in self._topics:
            if any(p.search(question) for p in patterns):
                return OutOfScope(name, reason)
        return None
