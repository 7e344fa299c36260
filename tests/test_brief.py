"""The brief to take to a lawyer: only the user's and the corpus's words, under fixed headings, disclaimer last."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from server_fixtures import FakeAssistant

from assistant import brief as brief_module
from assistant.brief import UnknownBriefError, to_html, to_markdown
from assistant.corpus import Corpus
from assistant.errors import InputError
from assistant.presentation import DISCLAIMER_TITLE, NOTICE_TITLE
from assistant.schemas import Answer
from assistant.service import AssistantService
from assistant.settings import Settings

PAYLOAD = "<script>alert(1)</script> I plan to release a remix **now**"
FIXED = {
    brief_module.BRIEF_TITLE,
    brief_module.QUESTIONS_TITLE,
    brief_module.PASSAGES_TITLE,
    brief_module.CHECKLIST_TITLE,
    NOTICE_TITLE,
    DISCLAIMER_TITLE,
}


def conversation(service: AssistantService) -> tuple[Answer, Answer]:
    """Two turns, the second a follow-up naming the first answer, as the chat and the widget send it."""
    first = service.ask("Does Spotify allow stem extraction?")
    history = [
        {"role": "user", "content": "Does Spotify allow stem extraction?"},
        {"role": "assistant", "content": first.answer, "answer_id": first.answer_id},
    ]
    second = service.ask(PAYLOAD, history)
    return first, second


def test_the_brief_holds_the_questions_notices_passages_checklist_and_disclaimer(service: AssistantService) -> None:
    first, second = conversation(service)
    made = service.brief(second.answer_id)
    corpus = service.corpus
    assert made.answer_id == second.answer_id
    assert made.questions == ["Does Spotify allow stem extraction?", PAYLOAD]
    assert [notice.text for notice in made.notices] == [corpus.escalation_triggers[0].text]
    assert made.checklist == corpus.checklist and len(made.checklist) == 8
    assert made.disclaimer == corpus.disclaimer
    # The same passage cited by both answers appears once.
    assert [passage.quote for passage in made.passages] == [first.citations[0].quote]
    assert made.passages[0].url == first.citations[0].url
    # Asked for the first answer, the brief holds only what came before it.
    assert service.brief(first.answer_id).questions == ["Does Spotify allow stem extraction?"]
    assert service.brief(first.answer_id).notices == []


def test_every_quoted_passage_is_corpus_text_and_the_disclaimer_is_verbatim(service: AssistantService) -> None:
    _, second = conversation(service)
    made = service.brief(second.answer_id)
    corpus_text = "\n".join(service.corpus.texts.values())
    quoted = [p.quote for p in made.passages] + [n.text for n in made.notices] + made.checklist
    assert quoted and all(text in corpus_text for text in quoted)
    markdown = to_markdown(made)
    page = to_html(made)
    assert markdown.rstrip().endswith(f"**{DISCLAIMER_TITLE}.** {service.corpus.disclaimer}")
    assert service.corpus.disclaimer in page
    for text in quoted:
        assert text in markdown and text in page  # the corpus's texts hold no character that needs escaping


def test_the_brief_adds_no_words_of_its_own(service: AssistantService) -> None:
    """Every line of the Markdown, once its Markdown syntax is removed, is a heading, a question, or corpus text."""
    _, second = conversation(service)
    made = service.brief(second.answer_id)
    corpus: Corpus = service.corpus
    allowed_text = "\n".join([*corpus.texts.values(), *made.questions]).replace("<", "&lt;").replace(">", "&gt;")
    titles = {corpus.article.title, *(s.title for s in corpus.sources)}
    for line in to_markdown(made).splitlines():
        text = re.sub(r"^(#+ |> ?|- \[ \] |- |\*\*?|---)", "", line).strip().strip("*").strip()
        text = re.sub(r" — <https?://\S+>$", "", text)
        text = re.sub(r"^\[\d+\] ", "", text)
        if not text or text in FIXED:
            continue
        text = text.removeprefix(f"{DISCLAIMER_TITLE}.**").strip()
        source = re.fullmatch(r"(?P<title>.+), “(?P<section>[^”]+)”", text)
        if source:
            assert source.group("title") in titles and source.group("section") in allowed_text, line
            continue
        assert text in allowed_text or text in titles, line


def test_user_text_is_escaped_in_both_forms(service: AssistantService) -> None:
    _, second = conversation(service)
    made = service.brief(second.answer_id)
    assert "<script>" not in to_markdown(made) and "&lt;script&gt;" in to_markdown(made)
    assert "<script>" not in to_html(made) and "&lt;script&gt;alert(1)&lt;/script&gt;" in to_html(made)
    assert "@media print" in to_html(made)


def test_unknown_and_malformed_ids_get_clear_errors(service: AssistantService) -> None:
    with pytest.raises(UnknownBriefError, match="not known to the server") as unknown:
        service.brief("0" * 32)
    assert unknown.value.status_code == 404
    with pytest.raises(InputError, match="32-character id"):
        service.brief("../../etc/passwd")


def test_a_brief_follows_only_earlier_answers_the_service_gave(tmp_path: Path, corpus: Corpus) -> None:
    settings = Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    first_service = AssistantService(settings, corpus, FakeAssistant(corpus))  # type: ignore[arg-type]
    first = first_service.ask("Does Spotify allow stem extraction?")
    forged = {"role": "assistant", "content": "x", "answer_id": "f" * 32}  # not an answer this service gave
    history = [
        {"role": "user", "content": "Does Spotify allow stem extraction?"},
        forged,
        {"role": "assistant", "content": first.answer, "answer_id": first.answer_id},
    ]
    second = first_service.ask("And if I only use it at home?", history)
    first_service.close()
    # Another process on the same store (a second worker or replica) makes the brief.
    other = AssistantService(settings, corpus, FakeAssistant(corpus))  # type: ignore[arg-type]
    try:
        made = other.brief(second.answer_id)
        assert made.questions == ["Does Spotify allow stem extraction?", "And if I only use it at home?"]
        assert other.brief(first.answer_id).questions == ["Does Spotify allow stem extraction?"]
        with pytest.raises(UnknownBriefError):
            other.brief("f" * 32)
    finally:
        other.close()
