"""Which 'When to Ask a Lawyer' situations the user is in.

A notice fires only when the user speaks of their own situation: the text
must refer to the user (first person, in any language the glossary knows, not
"my friend"), outside a hypothetical clause, and every concept group of the
trigger must be present. "What is a takedown notice?" uses the words of a
bullet but describes nobody's situation, so it stays quiet.

The bullets' wording comes from the article; how situations are phrased comes
from ``data/escalation.yaml``, whose trigger ids must match the article's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

import yaml

from assistant.corpus import EscalationTrigger
from assistant.errors import CorpusError

Pattern = re.Pattern[str]


@dataclass(frozen=True)
class TriggerRule:
    """A trigger and the concept groups that must all be present."""

    trigger: EscalationTrigger
    concept_groups: tuple[tuple[Pattern, ...], ...]
    context: tuple[Pattern, ...] = ()
    related_sections: tuple[str, ...] = ()


def _compile(patterns: Sequence[str]) -> tuple[Pattern, ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def _any(patterns: Sequence[Pattern], text: str) -> bool:
    return any(p.search(text) for p in patterns)


class EscalationDetector:
    """Finds the triggers whose situation the user describes."""

    def __init__(
        self, triggers: Sequence[EscalationTrigger], prepare: Callable[[str], str], headings: set[str] | None = None
    ) -> None:
        data = yaml.safe_load(resources.files("assistant").joinpath("data/escalation.yaml").read_text("utf-8"))
        known = {t.id for t in triggers}
        configured = set(data["triggers"])
        if known != configured:
            raise CorpusError(
                f"data/escalation.yaml describes triggers {sorted(configured)} but the article's "
                f"'When to Ask a Lawyer' bullets are {sorted(known)}; make them agree."
            )
        self._self = _compile(data["self_reference"])
        self._third_party = _compile(data["third_party"])
        self._hypothetical = _compile(data["hypothetical"])
        self._rules = [
            TriggerRule(
                trigger,
                tuple(_compile(group) for group in data["triggers"][trigger.id]["all_of"]),
                _compile(data["triggers"][trigger.id].get("context", [])),
                tuple(data["triggers"][trigger.id].get("related_sections", [])),
            )
            for trigger in triggers
        ]
        unknown = {s for rule in self._rules for s in rule.related_sections} - (headings or set())
        if headings is not None and unknown:
            raise CorpusError(f"data/escalation.yaml names sections the corpus lacks: {sorted(unknown)}.")
        self._prepare = prepare

    def speaks_of_self(self, text: str) -> bool:
        """True when the text describes the user's own situation, not a hypothetical or someone else's."""
        for pattern in self._hypothetical:
            text = pattern.sub(" ", text)
        for pattern in self._third_party:
            text = pattern.sub(" ", text)
        return _any(self._self, text)

    def _situations(self, message: str) -> tuple[str, list[TriggerRule]]:
        """The prepared text of one user message and the rules its own wording satisfies."""
        text = self._prepare(message)
        if not self.speaks_of_self(text):
            return text, []
        return text, [rule for rule in self._rules if all(_any(group, text) for group in rule.concept_groups)]

    def related_sections(self, trigger_ids: Sequence[str]) -> tuple[str, ...]:
        """Sections that speak to the given situations, most relevant first."""
        sections = [s for rule in self._rules if rule.trigger.id in trigger_ids for s in rule.related_sections]
        return tuple(dict.fromkeys(sections))

    def primary_sections(self, trigger_ids: Sequence[str]) -> tuple[str, ...]:
        """For each given situation, the section that speaks to it most directly (listed first)."""
        return tuple(
            dict.fromkeys(
                rule.related_sections[0]
                for rule in self._rules
                if rule.trigger.id in trigger_ids and rule.related_sections
            )
        )

    def detect(self, user_messages: Sequence[str]) -> list[EscalationTrigger]:
        """Triggers matched by the user's messages (earlier turns first), in the article's order."""
        prepared = [self._situations(message) for message in user_messages]
        conversation = " \n ".join(text for text, _ in prepared)
        fired = {
            rule.trigger.id
            for _, rules in prepared
            for rule in rules
            if not rule.context or _any(rule.context, conversation)
        }
        return [rule.trigger for rule in self._rules if rule.trigger.id in fired]
