"""The chat UI (Gradio Blocks), mounted at ``/`` of the one server.

Each reply is a group of separate chat messages: the answer (streamed in,
with ``[n]`` markers), one collapsed source card per citation, the lawyer
notices, and the disclaimer. Because the disclaimer is its own message, no
text in the answer can swallow or restyle it. User text is escaped so it is
always shown as text, never as HTML or Markdown; answer links survive only
when they point at a corpus URL.
"""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # imported after analytics is switched off
from fastapi import FastAPI
from linkify_it import LinkifyIt
from starlette.routing import Mount
from starlette.types import ASGIApp

from assistant import presentation
from assistant.errors import AssistantError
from assistant.feedback import MAX_COMMENT_CHARS, Vote
from assistant.presentation import reply_blocks
from assistant.schemas import Answer
from assistant.widget import STATIC_DIR

if TYPE_CHECKING:
    from assistant.corpus import Corpus
    from assistant.service import AssistantService
    from assistant.settings import Settings

ChatState = dict[str, Any]
Messages = list[dict[str, Any]]
Update = tuple[Messages, ChatState]

_MARKDOWN_PUNCTUATION = set("\\`*_{}[]()#+-.!|~$")
_HTML = {"<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;"}
_LINK = re.compile(r"\[(?P<text>[^\]\n]*)\]\((?P<url>[^)\s]+)(?:\s+\"[^\"\n]*\")?\)")
_WORDS = re.compile(r"\S+\s*")
PENDING_TITLE = "Looking through the article and its sources…"
NOTICE_TITLE = f"⚖️ {presentation.NOTICE_TITLE}"
COMPACT_NOTICE_TITLE = f"⚖️ {presentation.COMPACT_NOTICE_TITLE}"
NOTE_TITLE = f"ℹ️ {presentation.NOTE_TITLE}"
STREAM_PIECES = 12
BRIEF_LABEL = "Prepare a brief for a lawyer"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "monospace"]


def message_text(message: dict[str, Any]) -> str:
    """A chat message's text as the chat sends it to the page: its content is a string or a list of parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def escape_text(text: str) -> str:
    """Markdown that displays ``text`` literally: no HTML, no formatting, no links."""
    out = []
    for char in text:
        if char in _HTML:
            out.append(_HTML[char])
        elif char in _MARKDOWN_PUNCTUATION:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _code_span(text: str) -> str:
    """``text`` as a Markdown code span: shown verbatim, never escaped, linked or formatted."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def user_markdown(text: str) -> str:
    """Markdown that shows what the user typed literally.

    Web addresses (found by ``linkify-it-py``, the link finder behind markdown-it's linkify) go into code spans:
    backslash escapes inside an address would show as typed backslashes, and the chat's autolinker would turn
    them into a broken link. A code span shows the address exactly as typed, and does not link it.
    """
    out: list[str] = []
    last = 0
    for match in LinkifyIt().match(text) or []:
        out += [escape_text(text[last : match.index]), _code_span(text[match.index : match.last_index])]
        last = match.last_index
    out.append(escape_text(text[last:]))
    return "".join(out)


def allowed_urls(corpus: Corpus) -> frozenset[str]:
    """Every URL the corpus names: the only places answers may link to."""
    return corpus.urls


def safe_answer_markdown(text: str, allowed: frozenset[str]) -> str:
    """The answer's Markdown with raw HTML neutralised and links kept only to corpus URLs."""
    kept: list[str] = []

    def keep_or_strip(match: re.Match[str]) -> str:
        label = match.group("text").replace("<", "&lt;")
        if match.group("url") in allowed:
            kept.append(f"[{label}]({match.group('url')})")
            return f"\x00{len(kept) - 1}\x00"
        return label

    text = _LINK.sub(keep_or_strip, text.replace("\x00", ""))
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    text = re.sub(r"(?i)\b(https?|ftp):/+", lambda m: m.group(0).replace(":", "\\:"), text)
    text = re.sub(r"(?i)\bwww\.", "www\\.", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m.group(1))], text)


def reply_messages(answer: Answer, allowed: frozenset[str]) -> Messages:
    """Every block after the answer text as a chat message, the disclaimer last (``assistant/presentation.py``)."""
    messages: Messages = []
    for block in (answer.blocks or reply_blocks(answer))[1:]:
        if block.kind == "closest":
            messages.append({"role": "assistant", "content": f"{escape_text(block.title)}: {escape_text(block.text)}"})
        elif block.kind == "source":
            body = "\n".join("> " + escape_text(line) if line.strip() else ">" for line in block.text.splitlines())
            body += f"\n\n*{escape_text(block.source or '')}*"
            if block.url and block.url in allowed and block.link:
                body += f"\n\n[{escape_text(block.link)}]({block.url})"
            title = escape_text(block.title)
            messages.append({"role": "assistant", "content": body, "metadata": {"title": title, "status": "done"}})
        elif block.kind == "note":
            messages.append(
                {"role": "assistant", "content": f"*{escape_text(block.text)}*", "metadata": {"title": NOTE_TITLE}}
            )
        elif block.kind == "notice" and block.compact:
            body = f"*{escape_text(block.text)}*"
            messages.append({"role": "assistant", "content": body, "metadata": {"title": COMPACT_NOTICE_TITLE}})
        elif block.kind == "notice":
            body = f"{escape_text(block.text)}\n\n*{escape_text(block.source or '')}*"
            messages.append({"role": "assistant", "content": body, "metadata": {"title": NOTICE_TITLE}})
        elif block.kind == "disclaimer":
            text = f"<small><strong>{escape_text(block.title)}:</strong> {escape_text(block.text)}</small>"
            messages.append({"role": "assistant", "content": text})
    return messages


def answer_text(answer: Answer, allowed: frozenset[str]) -> str:
    """The answer body shown in the chat: its Markdown with links kept only to corpus URLs."""
    return safe_answer_markdown(answer.answer, allowed)


def stream_pieces(text: str, pieces: int = STREAM_PIECES) -> Iterator[str]:
    """At most ``pieces`` growing prefixes of ``text``, cut between words; the last one is the whole text.

    A fixed number of pieces, not a fixed number of words: every streamed update costs the server
    a round of serialising the conversation, so long answers must not mean many more updates.
    """
    words = _WORDS.findall(text)
    step = max(1, -(-len(words) // pieces))
    for end in range(step, len(words), step):
        yield "".join(words[:end])
    yield text


def new_state() -> ChatState:
    """An empty conversation: what is shown, engine history, answered turns, the vote awaiting a comment.

    It lives on the server (``gr.State``), so the browser never sends the conversation back.
    """
    return {"messages": [], "history": [], "turns": [], "vote": None, "unanswered": None}


class ChatHandlers:
    """The event handlers of the chat page, bound to one service."""

    def __init__(self, service: AssistantService) -> None:
        self.service = service
        self.allowed = allowed_urls(service.corpus)
        self.delay = service.settings.stream_delay

    def respond(self, question: str, state: ChatState) -> Iterator[Update]:
        """Show the question, stream the answer in, then add source cards, notices and disclaimer.

        The question box is not an output: the page clears it when the question is sent, and puts it back
        (:meth:`restore_question`) when the answer fails. A box among the outputs would cost the server a
        rebuilt component for every streamed piece it leaves unchanged.
        """
        question = question or ""  # a direct call to the chat endpoint may send null
        before = list(state["messages"])
        shown = [*before, {"role": "user", "content": user_markdown(question)}]
        pending = {"role": "assistant", "content": "", "metadata": {"title": PENDING_TITLE, "status": "pending"}}
        state["unanswered"] = question  # what goes back into the box if this fails
        yield [*shown, pending], state
        try:
            answer = self.service.ask(question, state["history"])
        except AssistantError as error:
            yield before, state
            raise gr.Error(str(error)) from None
        if answer.input_problem is not None:
            # The reason is an error event, so that a program calling the chat endpoint directly gets the same
            # sentence as a person (a warning would reach only the page); the page puts the question back.
            yield before, state
            raise gr.Error(answer.answer, title="Please change your question")
        index = len(shown)
        text = answer_text(answer, self.allowed)
        if self.delay:
            # Paced pieces read as typing. Unpaced they would arrive in one burst, each costing the server a
            # round of serialising the conversation for nothing, so with no delay the answer comes in one piece.
            for piece in stream_pieces(text):
                yield [*shown, {"role": "assistant", "content": piece}], state
                time.sleep(self.delay)
        final = [*shown, {"role": "assistant", "content": text}]
        final += reply_messages(answer, self.allowed)
        state["history"] += [
            {"role": "user", "content": question},
            {
                "role": "assistant",
                "content": answer.answer,
                "answer_id": answer.answer_id,
                "citations": [c.model_dump() for c in answer.citations],
            },
        ]
        state["turns"].append({"answer_id": answer.answer_id, "index": index, "end": len(final)})
        state["messages"] = final
        state["unanswered"] = None
        yield final, state

    @staticmethod
    def clear_question() -> str:
        """Empty the question box as the question is sent."""
        return ""

    @staticmethod
    def restore_question(state: ChatState) -> Any:
        """After a failed answer, the question that failed goes back into the box (else the box is left alone)."""
        question = state.get("unanswered")
        state["unanswered"] = None
        return gr.skip() if question is None else question

    def respond_example(self, state: ChatState, event: gr.SelectData) -> Iterator[Update]:
        """A starter question was clicked: answer it like a typed one."""
        value = event.value if isinstance(event.value, dict) else {}
        yield from self.respond(str(value.get("text", "")), state)

    def vote(self, state: ChatState, event: gr.LikeData) -> tuple[Any, Any, str, ChatState]:
        """Store a thumbs up/down at once, then offer an optional comment."""
        index = event.index[0] if isinstance(event.index, tuple | list) else event.index
        turn = next((t for t in state["turns"] if t["index"] <= index < t["end"]), None)
        if turn is None or event.liked not in (True, False):
            state["vote"] = None
            return gr.update(visible=False), gr.update(value=""), "", state
        vote: Vote = "up" if event.liked else "down"
        try:
            self.service.feedback(turn["answer_id"], vote)
        except AssistantError as error:
            raise gr.Error(str(error)) from None
        state["vote"] = {"answer_id": turn["answer_id"], "vote": vote}
        label = f"Thanks, your {'👍' if vote == 'up' else '👎'} is saved. Add a comment (optional)"
        return gr.update(visible=True), gr.update(value="", label=label), "Feedback saved.", state

    def comment(self, text: str, state: ChatState) -> tuple[Any, Any, str, ChatState]:
        """Attach the comment to the vote just given."""
        pending = state.get("vote")
        if not pending:
            return gr.update(visible=False), gr.update(value=""), "", state
        try:
            self.service.feedback(pending["answer_id"], pending["vote"], text)
        except AssistantError as error:
            raise gr.Error(str(error)) from None
        state["vote"] = None
        return gr.update(visible=False), gr.update(value=""), "Comment saved. Thank you!", state

    @staticmethod
    def brief_link(state: ChatState) -> str:
        """A link to the lawyer's brief of the last answer (and the conversation before it), once there is one."""
        if not state["turns"]:
            return ""
        return brief_link_html(state["turns"][-1]["answer_id"])

    @staticmethod
    def new_chat() -> tuple[Messages, ChatState, str, Any, str, str]:
        """Forget the conversation (stored feedback stays)."""
        return [], new_state(), "", gr.update(visible=False), "", ""


def brief_link_html(answer_id: str) -> str:
    """The "Prepare a brief" link: the printable brief opens in a new tab."""
    href = f"/api/brief/{html.escape(answer_id)}?format=html"
    return f'<a class="brief-link" href="{href}" target="_blank" rel="noopener">{BRIEF_LABEL}</a>'


def header_html(title: str, jurisdiction_note: str) -> str:
    """The page's title and jurisdiction note, one <details> that folds to one line on a phone.

    ``static/chat.js`` closes it on a narrow screen, so the answer gets the screen. (Not the HTML component's
    ``js_on_load``: Gradio runs that through ``Function(...)``, which the page's Content-Security-Policy forbids.)
    """
    esc = html.escape
    return (
        '<details id="about" open><summary><h1 id="title">'
        f"{esc(title)}</h1></summary>"
        f'<p id="jurisdiction"><strong>Applies to:</strong> {esc(jurisdiction_note)}. '
        "Answers quote the article and the sources it cites; this is general information, not legal advice.</p>"
        "</details>"
    )


def build_chat(service: AssistantService) -> gr.Blocks:
    """The chat page: jurisdiction note, chat with starters, feedback, disclaimer."""
    corpus, settings = service.corpus, service.settings
    handlers = ChatHandlers(service)
    demo: gr.Blocks
    with gr.Blocks(title=corpus.article.title, analytics_enabled=False, fill_height=True) as demo:
        gr.Markdown(header_html(corpus.article.title, corpus.jurisdiction_note), elem_id="page-header")
        state = gr.State(new_state())
        chatbot = gr.Chatbot(
            elem_id="chat",
            label="Conversation",
            show_label=False,
            scale=1,
            height="62vh",
            min_height=320,
            layout="bubble",
            autoscroll=False,  # static/chat.js scrolls a new answer's first line to the top instead
            buttons=["copy", "copy_all"],
            sanitize_html=True,
            allow_tags=False,
            latex_delimiters=[],
            allow_file_downloads=False,
            feedback_options=("Like", "Dislike"),
            placeholder="Ask a question, or pick one of these to start:",
            examples=[{"text": question} for question in settings.starter_questions],
        )
        question = gr.Textbox(
            elem_id="question",
            show_label=False,
            placeholder="Ask about stem separation and the law…",
            max_length=settings.max_question_chars,
            lines=1,
            max_lines=6,
            submit_btn="Ask",
            autofocus=True,
        )
        with gr.Row(elem_id="chat-actions"):
            new_chat = gr.Button("New chat", variant="secondary", size="sm", elem_id="new-chat", scale=0)
            brief = gr.Markdown("", elem_id="brief")
        with gr.Group(visible=False, elem_id="comment-box") as comment_box:
            comment = gr.Textbox(label="Add a comment (optional)", max_length=MAX_COMMENT_CHARS, lines=2)
            save_comment = gr.Button("Save comment", size="sm", elem_id="save-comment")
        status = gr.Markdown("", elem_id="feedback-status")
        gr.Markdown(f"**Legal disclaimer:** {escape_text(service.disclaimer)}", elem_id="page-disclaimer")
        gr.Markdown("[HTTP API](/docs) · [Embeddable widget](/widget)", elem_id="links")

        # Chat events are not capped by Gradio: answers are computed within the service's answer slots
        # (shared with the API), so the streaming pauses never hold a slot. The queue size still bounds them.
        chat_outputs = [chatbot, state]
        asked = question.submit(
            handlers.respond,
            [question, state],
            chat_outputs,
            api_name="chat",
            show_progress="hidden",
            concurrency_limit=None,
        )
        # Dispatched with the answer, after the page has read the box for it.
        question.submit(
            handlers.clear_question, None, [question], api_visibility="private", queue=False, show_progress="hidden"
        )
        picked = chatbot.example_select(
            handlers.respond_example,
            [state],
            chat_outputs,
            api_visibility="private",
            show_progress="hidden",
            concurrency_limit=None,
        )
        for answered in (asked, picked):
            answered.then(
                handlers.brief_link, [state], [brief], api_visibility="private", queue=False, show_progress="hidden"
            )
            answered.failure(
                handlers.restore_question,
                [state],
                [question],
                api_visibility="private",
                queue=False,
                show_progress="hidden",
            )
        feedback_outputs = [comment_box, comment, status, state]
        chatbot.like(handlers.vote, [state], feedback_outputs, api_visibility="private", show_progress="hidden")
        for trigger in (save_comment.click, comment.submit):
            trigger(handlers.comment, [comment, state], feedback_outputs, api_visibility="private")
        for reset in (new_chat.click, chatbot.clear):
            reset(
                handlers.new_chat,
                None,
                [chatbot, state, question, comment_box, status, brief],
                api_visibility="private",
                queue=False,
            )
    return demo


def mount_chat(app: FastAPI, service: AssistantService, settings: Settings) -> None:
    """Mount the chat at ``/`` with queue limits, no share/analytics/run history, uploads capped."""
    demo = build_chat(service)
    demo.state_session_capacity = settings.chat_sessions_kept  # read when the app is mounted
    demo.queue(default_concurrency_limit=settings.concurrency_limit, max_size=settings.queue_max_size, api_open=False)
    gr.mount_gradio_app(
        app,
        demo,
        path="/",
        server_name=settings.host,
        server_port=settings.port,
        footer_links=[],
        run_history=False,
        ssr_mode=False,
        max_file_size="1kb",
        show_error=False,
        mcp_server=False,
        enable_monitoring=False,
        pwa=False,
        theme=gr.themes.Soft(primary_hue="indigo", font=SYSTEM_FONTS, font_mono=MONO_FONTS),
        css_paths=[STATIC_DIR / "chat.css"],
        head='<script src="/widget-static/chat.js" defer></script>',
    )


def chat_app(
    parent: FastAPI, service: AssistantService, settings: Settings
) -> tuple[ASGIApp, Callable[[], AbstractAsyncContextManager[Any]]]:
    """The chat as an app of its own, to mount under ``parent`` after it has started (:mod:`assistant.deferred`).

    Gradio mounts onto a stand-in that shares ``parent``'s middleware list (Gradio reads it to leave CORS to the
    parent, as when mounted directly); the chat app and the lifespan that starts its queue are taken from it.
    """
    holder = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    holder.user_middleware = parent.user_middleware
    mount_chat(holder, service, settings)
    mounted = holder.router.routes[-1]
    if not isinstance(mounted, Mount):  # pragma: no cover - Gradio mounts its app last
        raise TypeError(f"Gradio mounted {type(mounted).__name__}, not an app")
    lifespan = holder.router.lifespan_context
    return mounted.app, lambda: lifespan(holder)
