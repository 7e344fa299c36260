"""Declined questions are grouped into topics by the content terms they share."""

from __future__ import annotations

from assistant.gaps import OTHER, uncovered_topics

QUESTIONS = [
    "What is the tax on royalties for remixes?",
    "How do I pay tax on streaming royalties?",
    "Is royalty income taxed in France?",
    "Can I trademark my DJ name?",
    "How to register a trademark for my label?",
    "What is the weather in Paris?",
    "Where do I send my [email] questions?",
    "Who reads my [email] then?",
]


def test_the_largest_shared_term_forms_the_first_topic_and_takes_its_questions() -> None:
    topics = uncovered_topics(QUESTIONS)
    assert [(topic.label, topic.count) for topic in topics] == [
        ("royalties / tax", 3),
        ("trademark", 2),
        (OTHER, 3),
    ]
    assert topics[0].examples == QUESTIONS[:3]
    assert sum(topic.count for topic in topics) == len(QUESTIONS)


def test_redaction_markers_are_not_topics() -> None:
    topics = uncovered_topics(["Mail [email] please", "Is [email] read?"])
    assert [topic.label for topic in topics] == [OTHER]


def test_top_and_examples_limit_the_listing() -> None:
    topics = uncovered_topics(QUESTIONS, top=1, examples=1)
    assert len(topics) == 1 and topics[0].examples == [QUESTIONS[0]]


def test_no_questions_no_topics() -> None:
    assert uncovered_topics([]) == []
