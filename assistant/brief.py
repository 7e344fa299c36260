"""A one-page brief to take to a lawyer, made from answers this server gave.

A brief holds only what the user or the corpus wrote, under fixed headings: the user's questions in their own
words (the conversation that led to the answer, as the shared store keeps it), the lawyer notices that
fired, the cited passages with their sources and links, the article's Practical Checklist, and the Legal
Disclaimer. The answer text itself is left out: a generative composer's sentences are not the corpus's words.

The whole checklist is included: its items carry no link to the lawyer notices or to the sections an answer
cites, and choosing among them by word overlap would be a hand-tuned guess presented as the article's advice.

It is offered as Markdown and as a printable HTML page (``GET /api/brief/{answer_id}``).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from assistant.corpus import ESCALATION_HEADING
from assistant.errors import InputError
from assistant.feedback import ANSWER_ID, check_answer_id
from assistant.presentation import DISCLAIMER_TITLE, NOTICE_TITLE, full_source, link_label
from assistant.schemas import Answer, Message

if TYPE_CHECKING:
    from assistant.corpus import Corpus
    from assistant.store import Store

BRIEF_TITLE = "Brief for a lawyer"
QUESTIONS_TITLE = "My situation, in my own words"
PASSAGES_TITLE = "Passages the assistant cited"
CHECKLIST_TITLE = "From the article: Practical Checklist"
MARKDOWN_LABEL = "Download as Markdown"


class UnknownBriefError(InputError):
    """The answer id is well formed, but this server does not remember that answer (or never gave it)."""

    status_code = 404


class BriefPassage(BaseModel):
    """A cited passage: the corpus's words, where they come from and where to read them."""

    n: int = Field(description="The citation's number in the answer.")
    quote: str = Field(description="The passage, verbatim from the corpus file.")
    source: str = Field(description="Source and section in full.")
    url: str | None = Field(default=None, description="Where to read the section (a corpus URL), if any.")
    link: str | None = Field(default=None, description="The link's text.")


class BriefNotice(BaseModel):
    """A 'When to Ask a Lawyer' bullet that fired for the situation."""

    trigger: str = Field(description="Trigger id.")
    text: str = Field(description="The article's bullet, verbatim.")
    source: str = Field(description="The section and article it is quoted from.")


class Brief(BaseModel):
    """Everything on the page, each text as the user or the corpus wrote it."""

    answer_id: str = Field(description="The answer the brief was asked for (the last of its conversation).")
    article: str = Field(description="The article's title.")
    questions: list[str] = Field(description="The user's questions, oldest first, as typed.")
    notices: list[BriefNotice] = Field(description="Lawyer notices that fired, in the article's order.")
    passages: list[BriefPassage] = Field(description="Every passage cited in the conversation, once.")
    checklist: list[str] = Field(description="The article's Practical Checklist, verbatim.")
    disclaimer: str = Field(description="The article's Legal Disclaimer, verbatim.")


class BriefResponse(BaseModel):
    """``GET /api/brief/{answer_id}``: the brief's parts and its Markdown."""

    brief: Brief
    markdown: str = Field(description="The brief as one Markdown document, disclaimer last.")


@dataclass(frozen=True)
class Turn:
    """One answered question of a conversation."""

    question: str
    answer: Answer


def conversation(store: Store, answer_id: str) -> list[Turn]:
    """The turns that led to ``answer_id`` and that turn itself, oldest first, as the shared store keeps them.

    Any replica or worker can make the brief of an answer another one gave. Only earlier answers this service
    gave are followed; an id the client made up is left out.
    """
    check_answer_id(answer_id)
    last = store.get_answer(answer_id)
    if last is None or last.reply is None:
        raise UnknownBriefError(
            "This answer is not known to the server (it was not given here, or before briefs were kept); ask your "
            "question again, then prepare the brief."
        )
    ids = [i for i in dict.fromkeys(last.earlier or []) if i != answer_id]
    found = store.get_answers(ids)
    earlier = [found[i] for i in ids if i in found and found[i].reply is not None]
    return [Turn(question=item.question, answer=Answer.model_validate(item.reply)) for item in [*earlier, last]]


def earlier_answer_ids(history: Sequence[dict[str, Any] | Message], answer_id: str) -> list[str]:
    """The well-formed answer ids a conversation's history names, oldest first, without ``answer_id`` itself."""
    ids = []
    for item in history:
        named = item.answer_id if isinstance(item, Message) else item.get("answer_id")
        if isinstance(named, str) and named != answer_id and ANSWER_ID.match(named):
            ids.append(named)
    return list(dict.fromkeys(ids))


def build_brief(corpus: Corpus, turns: Sequence[Turn]) -> Brief:
    """The brief for a conversation: its questions, the notices and passages of its answers, checklist, disclaimer."""
    questions = [turn.question for turn in turns if turn.question.strip()]
    fired = {escalation.trigger for turn in turns for escalation in turn.answer.escalations}
    notices = [
        BriefNotice(
            trigger=trigger.id,
            text=trigger.text,
            source=f"{corpus.article.title}, “{ESCALATION_HEADING}”",
        )
        for trigger in corpus.escalation_triggers
        if trigger.id in fired
    ]
    passages: list[BriefPassage] = []
    seen: set[tuple[str, str]] = set()
    for turn in turns:
        for citation in turn.answer.citations:
            key = (citation.source_id, citation.quote)
            if key in seen:
                continue
            seen.add(key)
            passages.append(
                BriefPassage(
                    n=len(passages) + 1,
                    quote=citation.quote,
                    source=full_source(citation),
                    url=citation.url if citation.url in corpus.urls else None,
                    link=link_label(citation) if citation.url in corpus.urls else None,
                )
            )
    return Brief(
        answer_id=turns[-1].answer.answer_id,
        article=corpus.article.title,
        questions=questions,
        notices=notices,
        passages=passages,
        checklist=corpus.checklist,
        disclaimer=corpus.disclaimer,
    )


def _md(text: str) -> str:
    return html.escape(text, quote=False)


def _md_quote(text: str) -> str:
    return "\n".join(f"> {_md(line)}" if line.strip() else ">" for line in text.splitlines())


def to_markdown(brief: Brief) -> str:
    """The brief as Markdown: headings, the texts as written (HTML escaped), the disclaimer last."""
    parts = [f"# {BRIEF_TITLE}", f"*{_md(brief.article)}*", f"## {QUESTIONS_TITLE}"]
    parts += [_md_quote(question) for question in brief.questions]
    if brief.notices:
        parts.append(f"## {NOTICE_TITLE}")
        parts.append("\n".join(f"- {_md(notice.text)}" for notice in brief.notices))
        parts.append(f"*{_md(brief.notices[0].source)}*")
    if brief.passages:
        parts.append(f"## {PASSAGES_TITLE}")
        for passage in brief.passages:
            where = f"[{passage.n}] {_md(passage.source)}"
            if passage.url:
                where += f" — <{passage.url}>"
            parts.append(f"{_md_quote(passage.quote)}\n\n{where}")
    parts.append(f"## {CHECKLIST_TITLE}")
    parts.append("\n".join(f"- [ ] {_md(item)}" for item in brief.checklist))
    parts.append(f"---\n**{DISCLAIMER_TITLE}.** {_md(brief.disclaimer)}")
    return "\n\n".join(parts) + "\n"


_PRINT_CSS = """
:root { color-scheme: light; }
body { font: 16px/1.5 Georgia, "Times New Roman", serif; color: #111; max-width: 46rem; margin: 1.5rem auto;
  padding: 0 1rem; overflow-wrap: anywhere; }
h1 { font-size: 1.5rem; margin: 0 0 0.2rem; }
h2 { font-size: 1.05rem; margin: 1.2rem 0 0.4rem; border-bottom: 1px solid #999; padding-bottom: 2px; }
blockquote { margin: 0.4rem 0; padding: 0.1rem 0 0.1rem 0.8rem; border-left: 3px solid #555; white-space: pre-wrap; }
.source { margin: 0.2rem 0 0.9rem; font-size: 0.9rem; color: #333; }
a { color: #1a3f9c; }
.article { font-style: italic; margin: 0 0 0.8rem; }
.checklist { list-style: "☐  "; }
.disclaimer { margin-top: 1.4rem; padding-top: 0.6rem; border-top: 2px solid #111; font-size: 0.9rem; }
.actions { display: flex; gap: 0.8rem; flex-wrap: wrap; margin: 0 0 1rem; font: 15px/1.4 system-ui, sans-serif; }
.actions a { padding: 0.35rem 0.7rem; border: 1px solid #1a3f9c; border-radius: 6px; text-decoration: none; }
:focus-visible { outline: 3px solid #1a3f9c; outline-offset: 2px; }
@media print {
  @page { margin: 1.6cm; }
  body { margin: 0; max-width: none; font-size: 11pt; }
  .actions { display: none; }
  h2 { break-after: avoid; }
  blockquote, li { break-inside: avoid; }
  a { color: #111; }
  a[href^="http"]::after { content: " (" attr(href) ")"; font-size: 0.85em; overflow-wrap: anywhere; }
}
"""


def to_html(brief: Brief) -> str:
    """A printable page (print CSS inline, no script): the brief's Markdown laid out as HTML."""
    esc = html.escape

    def quote(text: str) -> str:
        return f"<blockquote>{esc(text)}</blockquote>"

    body = [
        f"<h1>{BRIEF_TITLE}</h1>",
        f'<p class="article">{esc(brief.article)}</p>',
        '<nav class="actions" aria-label="Brief">'
        f'<a href="?format=markdown" download="brief-{esc(brief.answer_id)}.md">{MARKDOWN_LABEL}</a></nav>',
        f"<h2>{QUESTIONS_TITLE}</h2>",
        *[quote(question) for question in brief.questions],
    ]
    if brief.notices:
        body.append(f"<h2>{NOTICE_TITLE}</h2>")
        body.append("<ul>" + "".join(f"<li>{esc(notice.text)}</li>" for notice in brief.notices) + "</ul>")
        body.append(f'<p class="source">{esc(brief.notices[0].source)}</p>')
    if brief.passages:
        body.append(f"<h2>{PASSAGES_TITLE}</h2>")
        for passage in brief.passages:
            where = f"[{passage.n}] {esc(passage.source)}"
            if passage.url and passage.link:
                where += f'<br><a href="{esc(passage.url)}" rel="noopener noreferrer">{esc(passage.link)}</a>'
            body.append(f'{quote(passage.quote)}<p class="source">{where}</p>')
    body.append(f"<h2>{CHECKLIST_TITLE}</h2>")
    body.append('<ul class="checklist">' + "".join(f"<li>{esc(item)}</li>" for item in brief.checklist) + "</ul>")
    body.append(f'<p class="disclaimer"><strong>{DISCLAIMER_TITLE}:</strong> {esc(brief.disclaimer)}</p>')
    content = "\n".join(body)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{BRIEF_TITLE}: {esc(brief.article)}</title>
<style>{_PRINT_CSS}</style>
</head>
<body>
<main>
{content}
</main>
</body>
</html>
"""
