"""Escalation triggers: first-person situations fire; general questions that share the words do not."""

from __future__ import annotations

import pytest

from assistant.chunking import chunk_corpus
from assistant.corpus import Corpus
from assistant.errors import CorpusError
from assistant.escalation import EscalationDetector
from assistant.query import QueryPreparer
from assistant.retrieval import vocabulary


@pytest.fixture(scope="module")
def detector(corpus: Corpus) -> EscalationDetector:
    preparer = QueryPreparer(vocabulary(chunk_corpus(corpus, 700)))
    headings = {s.heading for s in corpus.sections}
    return EscalationDetector(corpus.escalation_triggers, lambda m: preparer.prepare(m).text, headings)


def fired(detector: EscalationDetector, *messages: str) -> set[str]:
    return {t.id for t in detector.detect(list(messages))}


SITUATIONS = {
    "commercial_release": [
        "I'm about to release an EP with a vocal I isolated using Demucs.",
        "My distributor is putting my bootleg on Apple Music next week; it uses AI-separated drums.",
        "We plan to sell the remix on Beatport — the acapella came from a stem splitter.",
        "my label will press my mashup on vinyl, the stems were extracted with ai",
        "Vamos a publicar mi remix en Spotify; usé stems separados con IA.",
        "gonna relase my edit on spotfy friday, used ai stems",
    ],
    "claim_or_takedown": [
        "YouTube put a Content ID claim on my mix that uses separated vocals.",
        "I just received a DMCA takedown for my remix built from AI stems.",
        "SoundCloud removed my bootleg after a copyright complaint.",
        "Ich habe eine Content ID Reklamation für meinen Remix bekommen, die Stems sind KI-getrennt.",
        "my video got a copyrite strike bc of the acapella i ripped",
    ],
    "building_product": [
        "We're developing a mobile app that splits songs into stems with AI.",
        "I'm building a web service where users upload tracks and get separated stems back.",
        "Our startup is training a stem separation model to sell as an API.",
        "Nous développons un plugin VST qui sépare les voix par IA.",
    ],
    "copyright_exception": [
        "Does my parody using an AI-extracted vocal qualify as fair use?",
        "I teach a production class and play separated stems in it — is my use covered by an exception?",
        "Is my transformative remix protected under fair dealing in the UK?",
        "Il mio remix rientra nel fair use?",
    ],
    "license_negotiation": [
        "I'm negotiating a remix license with a label for their stems.",
        "The publisher sent me a contract offering remix rights; what should I push back on?",
        "We're in talks with the artist's team about licensing the multitracks.",
        "Estou negociando uma licença de remix com a gravadora.",
    ],
}

GENERAL_QUESTIONS = [
    "What is a takedown notice?",
    "Is a private DJ set risky?",
    "Can producers release tracks that contain AI-separated stems?",
    "How does Content ID treat separated stems?",
    "Which companies build stem separation tools?",
    "What is fair use?",
    "What are the four fair use factors?",
    "How do remix license negotiations usually work?",
    "What does the article say about commercial releases?",
    "My friend got a copyright strike for a remix; how common is that?",
    "I'm playing a private DJ set tonight with an acapella I extracted.",
    "I only use separated stems to practise at home.",
    "What happens if I get a Content ID claim?",
    "I use an online vocal remover. Should I read its terms?",
    "I'm writing an essay about the training data question.",
    "Is it legal in the EU to separate stems?",
    "How do I get my songs onto Spotify playlists?",
    "How should I keep records of the stems in the tracks I released last year?",
]


@pytest.mark.parametrize(("trigger", "message"), [(t, m) for t, messages in SITUATIONS.items() for m in messages])
def test_first_person_situations_fire_their_trigger(detector: EscalationDetector, trigger: str, message: str) -> None:
    assert trigger in fired(detector, message)


@pytest.mark.parametrize("question", GENERAL_QUESTIONS)
def test_general_questions_do_not_escalate(detector: EscalationDetector, question: str) -> None:
    assert fired(detector, question) == set()


def test_a_situation_from_an_earlier_turn_still_applies(detector: EscalationDetector) -> None:
    assert fired(detector, "I got a Content ID claim on my remix.", "what should I do now?") == {"claim_or_takedown"}


def test_context_may_come_from_an_earlier_turn(detector: EscalationDetector) -> None:
    earlier = "I made a remix with a vocal separated by AI."
    assert fired(detector, "I'm putting it on Spotify next week.") == set()
    assert fired(detector, earlier, "I'm putting it on Spotify next week.") == {"commercial_release"}


def test_two_situations_in_one_message_fire_both(detector: EscalationDetector) -> None:
    message = "I got a takedown on my AI-stem bootleg and now I'm negotiating a remix licence with the label."
    assert fired(detector, message) == {"claim_or_takedown", "license_negotiation"}


def test_triggers_come_back_in_the_articles_order(detector: EscalationDetector, corpus: Corpus) -> None:
    message = "I'm negotiating a remix licence and plan to release the track with AI-separated stems."
    ids = [t.id for t in detector.detect([message])]
    order = [t.id for t in corpus.escalation_triggers]
    assert ids == sorted(ids, key=order.index) and len(ids) == 2


def test_rules_must_describe_the_articles_bullets(corpus: Corpus) -> None:
    with pytest.raises(CorpusError, match="make them agree"):
        EscalationDetector(corpus.escalation_triggers[:4], lambda m: m)


def test_related_sections_must_exist(corpus: Corpus) -> None:
    with pytest.raises(CorpusError, match="sections the corpus lacks"):
        EscalationDetector(corpus.escalation_triggers, lambda m: m, headings={"Introduction"})
