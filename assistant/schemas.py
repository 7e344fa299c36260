"""The public data model shared by Python, CLI JSON, the chat UI and the HTTP API."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

InputProblem = Literal["empty", "too_long", "invalid_history"]


class Citation(BaseModel):
    """A quoted passage that supports the answer sentences marked ``[n]``."""

    n: int = Field(description="The marker number used in the answer text.")
    source_id: str = Field(description="Id of the source in corpus/sources.yaml.")
    source_title: str = Field(description="The source's title as the article cites it.")
    section: str = Field(description="Section heading, exactly as written in the source file.")
    url: str | None = Field(description="Where a reader can follow the source; None when the corpus gives no URL.")
    quote: str = Field(description="Exact passage from the source file (checked by string match).")


class Message(BaseModel):
    """One earlier turn of the conversation.

    An assistant turn may carry its ``answer_id`` and ``citations`` (as the ``Answer`` gave them): follow-ups
    are then read from what it quoted, never from its rendered text.
    """

    role: Literal["user", "assistant"]
    content: str
    answer_id: str | None = Field(default=None, max_length=64, description="The earlier Answer's id.")
    citations: list[Citation] | None = Field(
        default=None, max_length=20, description="The earlier Answer's citations, as it returned them."
    )


class Escalation(BaseModel):
    """A 'When to Ask a Lawyer' notice that matches the user's situation."""

    trigger: str = Field(description="Trigger id, e.g. 'commercial_release'.")
    text: str = Field(description="The article's bullet, verbatim.")
    section: str = Field(default="When to Ask a Lawyer", description="Section the bullet is quoted from.")
    source_title: str = Field(default="", description="Title of the article the bullet comes from.")
    compact: bool = Field(
        default=False,
        description="True when the situation was told earlier and this reply is not about it: shown as one line.",
    )


class Block(BaseModel):
    """One part of a reply as a reader sees it (``assistant/presentation.py`` lays them out, in order)."""

    kind: Literal["answer", "closest", "source", "note", "notice", "disclaimer"] = Field(
        description="answer: the answer's Markdown; closest: sections that come closest when not answered; source: "
        "a citation's card; note: a note from the guardrails or the composer; notice: a lawyer notice; "
        "disclaimer: the Legal Disclaimer, always the last block."
    )
    title: str = Field(default="", description="The block's heading, plain text.")
    text: str = Field(description="The block's text: plain text, except the answer's Markdown with [n] markers.")
    n: int | None = Field(default=None, description="A source card's citation number.")
    url: str | None = Field(default=None, description="Where a source card links to (a corpus URL).")
    link: str | None = Field(default=None, description="The text of a source card's link.")
    source: str | None = Field(
        default=None, description="A source card's source and section in full; where a lawyer notice is quoted from."
    )
    compact: bool = Field(default=False, description="A notice told earlier in the conversation, shown as one line.")


class Answer(BaseModel):
    """What every interface returns for one question."""

    answer_id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="Unique id of this answer.")
    answer: str = Field(description="Markdown with [n] markers, without disclaimer or notices.")
    answered: bool = Field(description="False when the corpus does not cover the question or the input was unusable.")
    citations: list[Citation] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    disclaimer: str = Field(description="The article's Legal Disclaimer, verbatim.")
    rendered: str = Field(default="", description="The whole reply as a user sees it (Markdown).")
    blocks: list[Block] = Field(
        default_factory=list, description="The whole reply as a user sees it, block by block, disclaimer last."
    )
    closest_sections: list[str] = Field(
        default_factory=list, description="When not answered: the sections that come closest."
    )
    notices: list[str] = Field(
        default_factory=list,
        description="Notes from the guardrails, e.g. that a request to drop the disclaimer was ignored.",
    )
    input_problem: InputProblem | None = Field(
        default=None, description="Set when the input itself was unusable; the answer text says why."
    )
    composer: str = Field(
        default="extractive",
        description="What wrote the answer text: 'extractive' (verbatim quotes), 'generative' (a model's sentences, "
        "each verified against its quotes) or 'extractive_fallback' (a model was asked, but too little of its "
        "output could be verified, so the reply quotes the sources).",
    )
    sentences_dropped: int = Field(
        default=0, ge=0, description="Sentences a model wrote that failed verification and were not shown."
    )
