"""One layout of a reply, used by the Markdown, the chat and the widget."""

from __future__ import annotations

from assistant.corpus import Corpus
from assistant.guardrails import guard
from assistant.presentation import DISCLAIMER_TITLE, NOTICE_TITLE, markdown, reply_blocks, source_title
from assistant.schemas import Answer, Citation, Escalation


def answer(corpus: Corpus, **fields: object) -> Answer:
    citation = Citation(
        n=1, source_id="article", source_title="Article", section="Intro", url="https://x.test/#intro", quote="Q <b>"
    )
    base = Answer(answer="Claim. [1]", answered=True, citations=[citation], disclaimer=corpus.disclaimer)
    return base.model_copy(update=fields)


def test_blocks_come_in_one_order_with_the_disclaimer_last(corpus: Corpus) -> None:
    bullet = corpus.escalation_triggers[0]
    guarded = guard(
        answer(corpus),
        [Escalation(trigger=bullet.id, text=bullet.text, source_title="Article")],
        corpus.disclaimer,
        ["A note."],
    )
    kinds = [block.kind for block in guarded.blocks]
    assert kinds == ["answer", "source", "note", "notice", "disclaimer"]
    assert guarded.blocks == reply_blocks(guarded)
    assert guarded.rendered == markdown(guarded.blocks)
    notice = guarded.blocks[3]
    assert notice.title == NOTICE_TITLE and notice.text == bullet.text
    assert guarded.blocks[-1].title == DISCLAIMER_TITLE and guarded.blocks[-1].text == corpus.disclaimer


def test_markdown_escapes_every_text_and_ends_with_the_disclaimer(corpus: Corpus) -> None:
    rendered = markdown(reply_blocks(answer(corpus, answer="<img src=x onerror=alert(1)> [1]")))
    assert "<img" not in rendered and "&lt;img" in rendered
    assert "Q &lt;b&gt;" in rendered
    assert rendered.rstrip().endswith(corpus.disclaimer)


def test_closest_sections_are_a_block_only_when_not_answered_and_not_named(corpus: Corpus) -> None:
    unanswered = answer(corpus, answered=False, citations=[], answer="Not covered; see “Intro”.")
    blocks = reply_blocks(unanswered.model_copy(update={"closest_sections": ["Intro", "Sources"]}))
    assert [b.kind for b in blocks] == ["answer", "closest", "disclaimer"]
    assert blocks[1].text == "Sources"
    assert [b.kind for b in reply_blocks(answer(corpus, closest_sections=["Sources"]))][1] == "source"


def test_a_compact_notice_is_one_line(corpus: Corpus) -> None:
    bullet = corpus.escalation_triggers[1]
    blocks = reply_blocks(answer(corpus, escalations=[Escalation(trigger=bullet.id, text=bullet.text, compact=True)]))
    notice = next(b for b in blocks if b.kind == "notice")
    assert notice.compact and notice.text.startswith("As you said earlier,") and notice.text.endswith(bullet.text)


def test_card_titles_are_short_and_the_full_source_is_inside(corpus: Corpus) -> None:
    def cite(source_id: str, title: str, section: str) -> Citation:
        return Citation(n=2, source_id=source_id, source_title=title, section=section, url=None, quote="q")

    article = cite("article", corpus.article.title, "Practical Risks for Producers")
    statute = cite("us", "U.S. Copyright Act — Exclusive Rights", "§ 107. Limitations on exclusive rights: Fair use")
    treaty = cite("wct", "WIPO Copyright Treaty", "Article 11. Obligations concerning Technological Measures")
    preamble = cite("wct", "WIPO Copyright Treaty", "Preamble")
    assert [source_title(c) for c in (article, statute, treaty, preamble)] == [
        "[2] Article · Practical Risks for Producers",
        "[2] U.S. Copyright Act § 107",
        "[2] WIPO Copyright Treaty Article 11",
        "[2] WIPO Copyright Treaty · Preamble",
    ]
    card = next(b for b in reply_blocks(answer(corpus, citations=[statute])) if b.kind == "source")
    assert card.source == "U.S. Copyright Act — Exclusive Rights, “§ 107. Limitations on exclusive rights: Fair use”"
