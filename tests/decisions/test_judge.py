"""The fitted decisions on fixed examples written apart from the bank (the bank holds none of them)."""

from __future__ import annotations

import pytest

from assistant.assistant import Assistant
from assistant.conversation import TurnRequest
from assistant.decisions.judge import Judgement

pytestmark = pytest.mark.slow

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


def fired(assistant: Assistant, *messages: str) -> set[str]:
    triggers, _ = assistant.situations(messages[-1], list(messages[:-1]))
    return set(triggers)


# Probes the fitted decision gets wrong (measured; see the note on issue 9). Strict: a probe that starts
# passing fails here until its mark is removed.
MISSED = {
    "my label will press my mashup on vinyl, the stems were extracted with ai": "also fires claim_or_takedown",
    "gonna relase my edit on spotfy friday, used ai stems": "also fires claim_or_takedown",
    "Does my parody using an AI-extracted vocal qualify as fair use?": "read as a general question",
}


def _probe(trigger: str, message: str) -> object:
    if message in MISSED:
        return pytest.param(trigger, message, marks=pytest.mark.xfail(reason=MISSED[message], strict=True))
    return (trigger, message)


@pytest.mark.parametrize(("trigger", "message"), [_probe(t, m) for t, messages in SITUATIONS.items() for m in messages])
def test_first_person_situations_fire_their_trigger(assistant: Assistant, trigger: str, message: str) -> None:
    assert fired(assistant, message) == {trigger}


@pytest.mark.parametrize("question", GENERAL_QUESTIONS)
def test_general_questions_do_not_escalate(assistant: Assistant, question: str) -> None:
    assert fired(assistant, question) == set()


def test_a_situation_from_an_earlier_turn_still_applies(assistant: Assistant) -> None:
    assert fired(assistant, "I got a Content ID claim on my remix.", "what should I do now?") == {"claim_or_takedown"}


@pytest.mark.xfail(reason="'I'm putting it on Spotify next week' alone is read as a release plan", strict=True)
def test_context_may_come_from_an_earlier_turn(assistant: Assistant) -> None:
    earlier = "I made a remix with a vocal separated by AI."
    assert fired(assistant, "I'm putting it on Spotify next week.") == set()
    assert fired(assistant, earlier, "I'm putting it on Spotify next week.") == {"commercial_release"}


def test_two_situations_in_one_message_fire_both(assistant: Assistant) -> None:
    message = "I got a takedown on my AI-stem bootleg and now I'm negotiating a remix licence with the label."
    assert fired(assistant, message) == {"claim_or_takedown", "license_negotiation"}


def test_triggers_come_back_in_the_articles_order(assistant: Assistant) -> None:
    message = "I'm negotiating a remix licence and plan to release the track with AI-separated stems."
    triggers, _ = assistant.situations(message, [])
    order = [t.id for t in assistant.corpus.escalation_triggers]
    assert triggers == sorted(triggers, key=order.index) and len(triggers) == 2


def test_a_situation_told_earlier_is_not_what_an_unrelated_reply_is_about(assistant: Assistant) -> None:
    triggers, about = assistant.situations("How do I install Demucs?", ["I got a DMCA takedown for my AI-stem remix."])
    assert triggers == ["claim_or_takedown"] and about == set()


def judge(assistant: Assistant, question: str) -> Judgement:
    view = assistant._views.views([TurnRequest(question)])[0]
    return assistant._judge.judge(view, assistant._judge.question_features([view]), [])


@pytest.mark.parametrize(
    "question",
    [
        "Is an isolated vocal a derivative work?",
        "Can Content ID match stems that were separated out?",
        "What does the checklist say about streaming platforms?",
        "Does section 107 list factors for fair use?",
        "What does the WIPO treaty say about rights management information?",
        "does the article think separated stems are harder to detect than samples",
    ],
)
def test_covered_questions_are_judged_covered(assistant: Assistant, question: str) -> None:
    assert judge(assistant, question).covered


@pytest.mark.parametrize(
    "question",
    [
        "How do I install Demucs on Windows?",
        "Which stem splitter gives the cleanest vocals?",
        "How much does a music lawyer charge per hour?",
        "Is stem separation legal in Japan?",
        "What does Billboard's article conclude about AI tools?",
        "How long does copyright in a recording last in the UK?",
    ],
)
def test_questions_the_corpus_does_not_answer_are_judged_uncovered(assistant: Assistant, question: str) -> None:
    assert not judge(assistant, question).covered


def test_a_request_for_a_whole_list_is_recognised(assistant: Assistant) -> None:
    assert judge(assistant, "List every item on the article's practical checklist.").wants_list
    assert not judge(assistant, "Is a private DJ set risky?").wants_list


@pytest.mark.parametrize(
    ("question", "section"),
    [
        ("What does the disclaimer at the end say?", "Legal Disclaimer"),
        ("Which sources does the article cite?", "Sources"),
        ("When does the article say to get a lawyer?", "When to Ask a Lawyer"),
        ("What misconception does the article correct?", "Common Misconception"),
    ],
)
def test_a_named_part_is_answered_from_that_part(assistant: Assistant, question: str, section: str) -> None:
    ranking = judge(assistant, question).ranking
    assert assistant.table.sentences[ranking.top(1)[0]].section == section
