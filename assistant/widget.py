"""The embeddable help widget and who may embed it.

A site owner adds one ``<script src="…/widget.js">`` tag. The script draws a
floating button in a Shadow DOM and opens ``/widget`` — a compact page of this
server — in an iframe. Everything the user types and every answer stays
inside that frame, on this server's origin, so the host page can neither read
nor restyle it, and no key ever appears in the host page.

Which sites may frame ``/widget`` is decided by the
``Content-Security-Policy: frame-ancestors`` header built from
``settings.allowed_origins`` (``assistant/headers.py``); every other page may
only be framed by this server's own pages.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, HTMLResponse

from assistant.feedback import MAX_COMMENT_CHARS

if TYPE_CHECKING:
    from assistant.service import AssistantService

STATIC_DIR = Path(__file__).resolve().parent / "static"
WIDGET_PATH = "/widget"
DEFAULT_COLOR = "#2f4eb5"
DEFAULT_TITLE = "Stem separation: legal questions"
MAX_TITLE_CHARS = 80
MAX_STARTERS = 6
MAX_STARTER_CHARS = 200
_COLOR = re.compile(r"^(#[0-9a-fA-F]{3}|#[0-9a-fA-F]{6}|[a-zA-Z]{3,20})$")


def clean_color(value: str | None) -> str:
    """A hex or named CSS colour, or the default; nothing else reaches a style."""
    if value and _COLOR.fullmatch(value.strip()):
        return value.strip()
    return DEFAULT_COLOR


def clean_starters(value: str | None, fallback: list[str]) -> list[str]:
    """Starter questions from ``data-starters`` (separated by ``|``), trimmed and capped."""
    if not value:
        return fallback[:MAX_STARTERS]
    starters = [item.strip()[:MAX_STARTER_CHARS] for item in value.split("|")]
    return [item for item in starters if item][:MAX_STARTERS] or fallback[:MAX_STARTERS]


def render_widget_page(service: AssistantService, title: str | None, starters: str | None, color: str | None) -> str:
    """The compact chat page shown inside the iframe; every value is HTML-escaped."""
    settings = service.settings
    title_text = (title or "").strip()[:MAX_TITLE_CHARS] or DEFAULT_TITLE
    starter_list = clean_starters(starters, settings.starter_questions)
    config = {
        "maxChars": settings.max_question_chars,
        "maxTurns": settings.max_history_turns,
        "maxComment": MAX_COMMENT_CHARS,
        "color": clean_color(color),
        "starters": starter_list,
    }
    buttons = "\n".join(
        f'      <li><button type="button" class="starter">{html.escape(text)}</button></li>' for text in starter_list
    )
    esc = html.escape
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>{esc(title_text)}</title>
  <link rel="stylesheet" href="widget-static/widget.css">
  <script src="widget-static/widget-panel.js" defer></script>
</head>
<body>
  <main id="panel" data-config="{esc(json.dumps(config))}">
    <header class="bar">
      <h1>{esc(title_text)}</h1>
      <button type="button" id="new-chat" class="ghost">New chat</button>
      <button type="button" id="close" class="ghost" hidden>Close</button>
    </header>
    <p class="jurisdiction"><strong>Applies to:</strong> {esc(service.corpus.jurisdiction_note)}.
      General information about <cite>{esc(service.corpus.article.title)}</cite>, not legal advice.</p>
    <section id="log" role="log" aria-live="polite" aria-label="Conversation"></section>
    <ul id="starters" aria-label="Starter questions">
{buttons}
    </ul>
    <form id="ask-form">
      <label for="question" class="visually-hidden">Your question</label>
      <textarea id="question" name="question" rows="2" maxlength="{settings.max_question_chars}"
        placeholder="Ask about stem separation and the law…" required></textarea>
      <button type="submit" id="send">Ask</button>
    </form>
    <footer>
      <p class="disclaimer" id="page-disclaimer"><strong>Legal disclaimer:</strong> {esc(service.disclaimer)}</p>
    </footer>
  </main>
</body>
</html>
"""


def widget_router(service: AssistantService) -> APIRouter:
    """Routes for the loader script and the framed page (no API docs for them)."""
    router = APIRouter(include_in_schema=False)

    @router.get("/widget.js")
    def widget_script() -> FileResponse:
        return FileResponse(
            STATIC_DIR / "widget.js",
            media_type="text/javascript; charset=utf-8",
            headers={"cache-control": "public, max-age=300", "cross-origin-resource-policy": "cross-origin"},
        )

    @router.get(WIDGET_PATH)
    def widget_page(
        title: str | None = Query(default=None, max_length=500),
        starters: str | None = Query(default=None, max_length=4000),
        color: str | None = Query(default=None, max_length=40),
    ) -> HTMLResponse:
        return HTMLResponse(render_widget_page(service, title, starters, color), headers={"cache-control": "no-store"})

    return router
