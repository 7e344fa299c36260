"""How a reply is laid out, in one place: the blocks every interface shows, in the order it shows them.

An :class:`~assistant.schemas.Answer` becomes a list of :class:`~assistant.schemas.Block`: the answer text,
the closest sections when the corpus has no answer, one source card per citation, the guard's notes, the
lawyer notices, and the disclaimer, always last. Every label a reader sees ("When to ask a lawyer",
"Legal disclaimer", a card's title) is written here once. The Markdown of ``Answer.rendered`` (CLI, API),
the chat's messages and the widget (which receives the blocks in the API's JSON) are drawn from these blocks
and add only their own markup.
"""

from __future__ import annotations

import html
import re

from assistant.schemas import Answer, Block, Citation

NOTICE_TITLE = "When to ask a lawyer"
COMPACT_NOTICE_TITLE = "Still applies"
NOTE_TITLE = "Note"
DISCLAIMER_TITLE = "Legal disclaimer"
SOURCES_TITLE = "Sources"
CLOSEST_TITLE = "Closest sections"


_NUMBERED = re.compile(r"^(?P<number>§\s*[\w.-]+|Article\s+\w+)\.\s+")


def short_label(citation: Citation) -> str:
    """A short name for a cited section, quick to scan ("Article · Safer Alternatives", "U.S. Copyright Act § 107").

    The source's name is its title as the article cites it, up to any dash; a numbered section keeps its number.
    """
    if citation.source_id == "article":
        return f"Article · {citation.section}"
    source = citation.source_title.split(" — ")[0].strip()
    match = _NUMBERED.match(citation.section)
    return f"{source} {match.group('number')}" if match else f"{source} · {citation.section}"


def source_title(citation: Citation) -> str:
    """A source card's title: its number and the short label of its section."""
    return f"[{citation.n}] {short_label(citation)}"


def full_source(citation: Citation) -> str:
    """The source and section in full, as shown inside a card."""
    return f"{citation.source_title}, “{citation.section}”"


def link_label(citation: Citation) -> str:
    """The text of a source card's link."""
    return f"Open {citation.source_title} ↗"


def reply_blocks(answer: Answer) -> list[Block]:
    """The reply as a reader sees it, block by block; the disclaimer is the last block of every reply."""
    blocks = [Block(kind="answer", text=answer.answer)]
    missing = [section for section in answer.closest_sections if section not in answer.answer]
    if not answer.answered and missing:
        blocks.append(Block(kind="closest", title=CLOSEST_TITLE, text=", ".join(missing)))
    blocks.extend(
        Block(
            kind="source",
            n=citation.n,
            title=source_title(citation),
            text=citation.quote,
            url=citation.url,
            link=link_label(citation) if citation.url else None,
            source=full_source(citation),
        )
        for citation in answer.citations
    )
    blocks.extend(Block(kind="note", title=NOTE_TITLE, text=note) for note in answer.notices)
    for notice in answer.escalations:
        if notice.compact:
            lead = f"As you said earlier, “{notice.section}” applies: "
            blocks.append(Block(kind="notice", title=COMPACT_NOTICE_TITLE, text=lead + notice.text, compact=True))
        else:
            where = f"From “{notice.section}”" + (f", {notice.source_title}" if notice.source_title else "") + "."
            blocks.append(Block(kind="notice", title=NOTICE_TITLE, text=notice.text, source=where))
    blocks.append(Block(kind="disclaimer", title=DISCLAIMER_TITLE, text=answer.disclaimer))
    return blocks


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _quote_block(text: str) -> str:
    return "\n".join(f"> {_escape(line)}" if line.strip() else ">" for line in text.splitlines())


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "…"


def markdown(blocks: list[Block]) -> str:
    """The blocks as one Markdown text (``Answer.rendered``), every piece of text escaped."""
    parts: list[str] = []
    sources: list[str] = []
    for block in blocks:
        if block.kind == "source":
            where = f"[{block.n}] {_escape(block.source or block.title)}"
            if block.url:
                where = f"[{where}]({block.url})"
            sources.append(f"{where}: “{_escape(_short(block.text))}”")
            continue
        if sources:
            parts.append(f"**{SOURCES_TITLE}**\n\n" + "\n".join(sources))
            sources = []
        if block.kind == "answer":
            parts.append(_escape(block.text))
        elif block.kind == "closest":
            parts.append(f"{block.title}: {_escape(block.text)}")
        elif block.kind == "note" or (block.kind == "notice" and block.compact):
            parts.append(f"*{_escape(block.text)}*")
        elif block.kind == "notice":
            parts.append(f"**{block.title}.**\n\n{_quote_block(block.text)}\n\n*{_escape(block.source or '')}*")
        elif block.kind == "disclaimer":
            parts.append(f"---\n**{block.title}.** {_escape(block.text)}")
    return "\n\n".join(parts)
