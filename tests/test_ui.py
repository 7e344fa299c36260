"""Chat UI pieces with a fake assistant: escaping, link policy, streaming, feedback handlers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from assistant.corpus import load_corpus
from assistant.schemas import Answer
from assistant.service import AssistantService
from assistant.settings import Settings
from assistant.ui import (
    BRIEF_LABEL,
    NOTICE_TITLE,
    ChatHandlers,
    allowed_urls,
    build_chat,
    escape_text,
    header_html,
    message_text,
    new_state,
    reply_messages,
    safe_answer_markdown,
    stream_pieces,
    user_markdown,
)

CORPUS_URL = "https://www.copyright.gov/title17/92chap1.html#106"


def test_user_text_is_escaped_for_markdown_and_html() -> None:
    escaped = escape_text("<img src=x onerror=alert(1)> **bold** [link](https://evil.example) & $$x$$")
    assert "<" not in escaped and ">" not in escaped
    assert "&lt;img src=x onerror=alert\\(1\\)&gt;" in escaped
    assert "\\*\\*bold\\*\\*" in escaped
    assert "\\[link\\]\\(https://evil\\.example\\)" in escaped
    assert "&amp;" in escaped and "\\$\\$x\\$\\$" in escaped


def test_a_typed_address_is_shown_as_typed_in_a_code_span_and_the_rest_escaped() -> None:
    shown = user_markdown("Is https://example.com/track.html and www.example.org/a_b ok? **x** <b>")
    assert "`https://example.com/track.html`" in shown
    assert "`www.example.org/a_b`" in shown
    assert "\\*\\*x\\*\\*" in shown and "&lt;b&gt;" in shown
    assert user_markdown("no address here.") == escape_text("no address here.")


def test_a_typed_address_with_backticks_keeps_its_code_span_closed() -> None:
    shown = user_markdown("see https://example.com/a`b")
    assert shown.endswith("``https://example.com/a`b``")


def test_answer_links_survive_only_to_corpus_urls(service: AssistantService) -> None:
    allowed = allowed_urls(service.corpus)
    assert CORPUS_URL in allowed
    text = (
        f"See [the Act]({CORPUS_URL}) and [this](https://evil.example/x), "
        "https://evil.example/y or www.evil.example <b>hi</b>"
    )
    safe = safe_answer_markdown(text, allowed)
    assert f"[the Act]({CORPUS_URL})" in safe
    assert "(https://evil.example/x)" not in safe and "this" in safe
    assert "https\\://evil.example/y" in safe
    assert "www\\.evil" in safe
    assert "<b>" not in safe and "&lt;b>" in safe


def test_stream_pieces_grow_to_the_whole_text() -> None:
    text = "One two three four five six seven. [1]\n\n- eight nine [2]"
    pieces = list(stream_pieces(text, pieces=4))
    assert len(pieces) == 4
    assert len(list(stream_pieces(" ".join(["word"] * 500)))) == 12  # long answers: no more updates
    assert pieces[-1] == text
    assert all(text.startswith(piece) for piece in pieces)
    assert [len(p) for p in pieces] == sorted(len(p) for p in pieces)


def test_reply_has_collapsed_source_cards_notices_and_the_disclaimer_last(service: AssistantService) -> None:
    answer = service.ask("Can I release my remix?")
    messages = reply_messages(answer, allowed_urls(service.corpus))
    card, notice, disclaimer = messages
    assert card["metadata"]["status"] == "done"
    assert card["metadata"]["title"] == "\\[1\\] U\\.S\\. Copyright Act § 106"
    assert card["content"].startswith("> Spotify, Apple Music")
    assert f"]({CORPUS_URL})" in card["content"]
    assert notice["metadata"]["title"] == NOTICE_TITLE
    assert "commercially release" in notice["content"]
    assert "metadata" not in disclaimer
    assert escape_text(service.disclaimer) in disclaimer["content"]


def test_citation_links_outside_the_corpus_are_dropped(service: AssistantService) -> None:
    answer = service.ask("Is it legal?")
    source = next(block for block in answer.blocks if block.kind == "source")
    source.url = "https://evil.example/"
    card = reply_messages(answer, allowed_urls(service.corpus))[0]
    assert card["metadata"]["title"].startswith("\\[1\\]")
    assert "evil.example" not in card["content"]


def drain(updates: Iterator[Any]) -> list[Any]:
    return list(updates)


def test_respond_streams_then_adds_cards_and_disclaimer(service: AssistantService) -> None:
    handlers = ChatHandlers(service)
    handlers.delay = 0.001  # paced: the answer arrives in pieces
    state = new_state()
    stream = handlers.respond("Does Spotify allow <b>stem</b> extraction?", state)
    updates = [next(stream)]
    first_messages, first_state = updates[0]
    assert first_state["unanswered"] == "Does Spotify allow <b>stem</b> extraction?"  # until it is answered
    updates += drain(stream)
    assert first_messages[0] == {"role": "user", "content": escape_text("Does Spotify allow <b>stem</b> extraction?")}
    assert first_messages[1]["metadata"]["status"] == "pending"
    streamed = [messages[1]["content"] for messages, _ in updates[1:-1]]
    assert len(streamed) >= 2
    assert streamed[-1] == "Platform terms may prohibit stem extraction. [1]"
    assert all(streamed[-1].startswith(piece) for piece in streamed)
    final, final_state = updates[-1]
    assert final[-1]["content"].startswith("<small><strong>Legal disclaimer:</strong>")
    assert final_state["turns"][0]["index"] == 1
    assert ChatHandlers.restore_question(final_state) == gr.skip()  # answered: the box is left alone
    assert final_state["history"][0] == {"role": "user", "content": "Does Spotify allow <b>stem</b> extraction?"}


def test_with_no_stream_delay_the_answer_comes_in_one_piece(service: AssistantService) -> None:
    assert service.settings.stream_delay == 0
    updates = drain(ChatHandlers(service).respond("Does Spotify allow stem extraction?", new_state()))
    assert len(updates) == 2  # the question with the pending note, then the whole reply
    final, _ = updates[-1]
    assert final[1]["content"] == "Platform terms may prohibit stem extraction. [1]"
    assert final[-1]["content"].startswith("<small><strong>Legal disclaimer:</strong>")


def rejected(updates: Iterator[Any]) -> tuple[Any, str]:
    """The updates a rejected question yields (the last restores the page), and the error's message."""
    shown: list[Any] = []
    with pytest.raises(gr.Error) as error:
        for update in updates:
            shown.append(update)
    return shown[-1], str(error.value.message)


def test_bad_input_changes_nothing_and_says_why(service: AssistantService) -> None:
    handlers = ChatHandlers(service)
    state = new_state()
    (messages, final_state), message = rejected(handlers.respond("   ", state))
    assert messages == [] and final_state["history"] == []
    assert ChatHandlers.restore_question(final_state) == "   "  # the page puts it back into the box
    assert ChatHandlers.restore_question(final_state) == gr.skip()  # once
    assert message.startswith("Please type a question")


def test_a_null_question_from_the_chat_endpoint_is_treated_as_empty(service: AssistantService) -> None:
    handlers = ChatHandlers(service)
    state = new_state()
    (messages, final_state), _ = rejected(handlers.respond(None, state))  # type: ignore[arg-type]
    assert messages == [] and final_state["history"] == [] and ChatHandlers.restore_question(final_state) == ""


def like(index: int, liked: bool | str) -> gr.LikeData:
    return gr.LikeData(None, {"index": index, "value": ["..."], "liked": liked})


def test_votes_and_comments_are_stored_for_the_right_answer(service: AssistantService) -> None:
    handlers = ChatHandlers(service)
    state = new_state()
    drain(handlers.respond("first question", state))
    drain(handlers.respond("second question", state))
    first, second = state["turns"]
    box, _, status, state = handlers.vote(state, like(second["index"], False))
    assert box["visible"] is True and status == "Feedback saved."
    stored = service.store.get_feedback(second["answer_id"])
    assert (stored.question, stored.vote) == ("second question", "down")
    handlers.comment("Quote the statute instead", state)
    assert service.store.get_feedback(second["answer_id"]).comment == "Quote the statute instead"
    handlers.vote(state, like(first["index"], True))
    assert service.store.get_feedback(first["answer_id"]).vote == "up"
    handlers.vote(state, like(first["index"], ""))  # clearing a vote stores nothing new
    assert service.store.count_feedback() == 2


def test_the_page_has_jurisdiction_note_starters_feedback_and_disclaimer(service: AssistantService) -> None:
    demo = build_chat(service)
    config = demo.get_config_file()
    values = " ".join(str(c.get("props", {}).get("value", "")) for c in config["components"])
    assert '<p id="jurisdiction"><strong>Applies to:</strong> US, EU, UK (untested in most courts).' in values
    assert f'<h1 id="title">{service.corpus.article.title}</h1>' in values
    assert escape_text(service.disclaimer) in values
    chatbot = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "chat")
    props = chatbot["props"]
    assert [e["text"] for e in props["examples"]] == service.settings.starter_questions
    assert props["sanitize_html"] is True and props["allow_tags"] is False and props["latex_delimiters"] == []
    assert "share" not in props["buttons"]
    assert re.search(r'"api_name": "chat"', str(config).replace("'", '"'))


def test_the_streamed_answer_leaves_the_question_box_to_the_page(service: AssistantService) -> None:
    """The box is cleared on send and restored on failure by unqueued events, never by the streamed one."""
    config = build_chat(service).get_config_file()
    box = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "question")
    chat = next(d for d in config["dependencies"] if d.get("api_name") == "chat")
    assert box in chat["inputs"] and box not in chat["outputs"]
    on_box = [d for d in config["dependencies"] if box in d["outputs"]]
    clear = next(d for d in on_box if any(t[0] == box and t[1] == "submit" for t in d["targets"]))
    assert clear["queue"] is False and clear["js"] is None
    restores = [d for d in on_box if d.get("trigger_after") is not None and d.get("trigger_only_on_failure")]
    assert len(restores) == 2  # after a typed question and after a clicked starter


def test_a_plain_answer_object_round_trips_through_rendering(service: AssistantService) -> None:
    answer = Answer(
        answer="No text covers this.", answered=False, disclaimer=service.disclaimer, closest_sections=["Sources"]
    )
    messages = reply_messages(answer, allowed_urls(service.corpus))
    # The closest sections (the same block in the chat, the widget and the Markdown), then the disclaimer.
    assert messages[0]["content"] == "Closest sections: Sources"
    assert len(messages) == 2 and service.disclaimer.split(".")[0] in messages[1]["content"].replace("\\", "")


def test_not_ready_shows_a_clear_error_and_restores_the_question(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    loading = AssistantService(settings, load_corpus(settings.corpus_dir))  # never started: still "loading"
    try:
        updates = ChatHandlers(loading).respond("Is sampling legal?", new_state())
        shown, _ = next(updates)
        assert shown[0]["role"] == "user"
        restored, state = next(updates)
        assert (
            restored == [] and state["history"] == [] and ChatHandlers.restore_question(state) == "Is sampling legal?"
        )
        with pytest.raises(gr.Error, match="still loading"):
            next(updates)
    finally:
        loading.close()


def test_the_header_escapes_corpus_text_and_folds_into_one_details() -> None:
    header = header_html("A <b>title</b> & more", "US <i>only</i>")
    assert header.startswith(
        '<details id="about" open><summary><h1 id="title">A &lt;b&gt;title&lt;/b&gt; &amp; more</h1>'
    )
    assert "US &lt;i&gt;only&lt;/i&gt;" in header and "<i>" not in header


def test_the_brief_link_follows_the_last_answer_and_a_new_chat_removes_it(service: AssistantService) -> None:
    handlers = ChatHandlers(service)
    state = new_state()
    assert handlers.brief_link(state) == ""
    drain(handlers.respond("first question", state))
    drain(handlers.respond("second question", state))
    link = handlers.brief_link(state)
    last = state["turns"][-1]["answer_id"]
    assert f'href="/api/brief/{last}?format=html"' in link and BRIEF_LABEL in link
    assert service.brief(last).questions == ["first question", "second question"]
    assert ChatHandlers.new_chat()[-1] == ""


def test_message_text_reads_a_string_or_a_list_of_parts() -> None:
    assert message_text({"role": "assistant", "content": "plain"}) == "plain"
    parts = [{"type": "text", "text": "one "}, {"type": "file"}, "stray", {"type": "text", "text": "two"}]
    assert message_text({"role": "assistant", "content": parts}) == "one two"
    assert message_text({"role": "assistant", "content": None}) == ""
