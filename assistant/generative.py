"""A generative composer: a chat model writes the answer, and only its verified sentences reach the user.

Opt-in: ``ASSISTANT_LLM`` names a model (``openai:MODEL`` with ``ASSISTANT_LLM_BASE_URL`` for any
OpenAI-compatible server such as llama.cpp or vLLM, or ``ollama:MODEL``); it is built with LangChain's
``init_chat_model``. The model sees the question and the retrieved passages, numbered, and returns JSON:
sentences, each with the ids of the passages it rests on and exact quotes from them. The
:class:`~assistant.verify.Verifier` then decides, sentence by sentence, what is shown.

When the corpus does not cover the question (the fitted coverage decision), the model is not asked. When it
errs, times out, returns something that is not the schema, or too little of what it wrote survives
verification, the reply is the extractive composer's, with a notice saying so. The model never writes the
disclaimer or the lawyer notices: the guard adds them after any composer.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable
from pydantic import BaseModel, Field

from assistant.answer import AnswerComposer, Composition, CompositionRequest
from assistant.corpus import Corpus
from assistant.errors import AssistantError
from assistant.schemas import Citation
from assistant.settings import Settings
from assistant.verify import Claim, QuotedPassage, Verdict, Verifier

log = logging.getLogger("assistant.generative")

FALLBACK_NOTICE = (
    "A language model was asked to phrase this answer, but too little of what it wrote could be verified "
    "against the sources, so this reply quotes them directly."
)


def generated_notice(dropped: int) -> str:
    """What a reader is told about a generative answer: who wrote it, how it was checked, what was left out."""
    plural = dropped != 1
    left_out = (
        f" {dropped} sentence{'s' if plural else ''} that could not be verified {'were' if plural else 'was'} left out."
        if dropped
        else ""
    )
    return (
        "Phrased by a language model: each sentence was checked against the exact passage it cites before it was "
        f"shown.{left_out}"
    )


class GeneratedSentence(BaseModel):
    """One sentence of a model's answer and what it rests on."""

    text: str = Field(description="One sentence of the answer, in plain words, without links or markup.")
    passages: list[int] = Field(description="Ids of the passages this sentence rests on, e.g. [1].")
    quotes: list[str] = Field(description="Exact words copied from those passages that support the sentence.")


class GeneratedAnswer(BaseModel):
    """A model's whole answer."""

    sentences: list[GeneratedSentence] = Field(description="The answer, one sentence per item, at most five.")


SYSTEM = """You answer questions about one legal-information article on AI stem separation and the sources it \
cites, using ONLY the numbered passages given. Do not give legal advice, do not write a disclaimer, and do not \
tell the user whether they need a lawyer: those are added separately.

Reply with JSON only, in this shape:
{{"sentences": [{{"text": "one sentence", "passages": [1], "quotes": ["exact words copied from passage 1"]}}]}}

Rules: at most five sentences; every sentence cites at least one passage id and gives at least one quote copied \
character for character from a cited passage; keep every qualification the passage makes ("arguably", "may", \
"likely"); no links, no markup."""

HUMAN = """Passages:
{passages}

Question: {question}"""


def chat_model(settings: Settings) -> BaseChatModel:
    """The chat model named by ``ASSISTANT_LLM``, through LangChain's integrations; keys never appear in errors."""
    if not settings.llm:
        raise AssistantError("No language model is configured; set ASSISTANT_LLM, e.g. 'openai:MODEL'.")
    from langchain.chat_models import init_chat_model

    provider, _, name = settings.llm.partition(":")
    if not name:
        raise AssistantError(
            f"ASSISTANT_LLM must read 'provider:model' (e.g. 'openai:gpt-4o-mini' or 'ollama:llama3.2'); got "
            f"'{settings.llm}'."
        )
    options: dict[str, Any] = {"temperature": 0.0}
    if provider == "openai":
        options |= {"timeout": settings.llm_timeout, "max_retries": 0, "max_tokens": settings.llm_max_tokens}
        if settings.llm_json_mode:
            options["model_kwargs"] = {"response_format": {"type": "json_object"}}
        # An OpenAI-compatible server without keys (llama.cpp, vLLM) still needs some key for the client.
        key = settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        options["api_key"] = key or "not-needed"
        if settings.llm_base_url:
            options["base_url"] = settings.llm_base_url
    elif provider == "ollama":
        options |= {"num_predict": settings.llm_max_tokens, "client_kwargs": {"timeout": settings.llm_timeout}}
        if settings.llm_json_mode:
            options["format"] = "json"
        if settings.llm_base_url:
            options["base_url"] = settings.llm_base_url
    try:
        model: BaseChatModel = init_chat_model(name, model_provider=provider, **options)
    except ImportError as error:
        raise AssistantError(
            f"The '{provider}' chat models need their LangChain package: pip install langchain-{provider}."
        ) from error
    except Exception as error:
        problem = type(error).__name__
        raise AssistantError(f"The language model '{settings.llm}' could not be set up ({problem}).") from None
    return model


def passage_block(passages: Sequence[QuotedPassage]) -> str:
    """The passages as the model sees them: id, source and section, then the exact text."""
    blocks = []
    for p in passages:
        meta = p.document.metadata
        title = meta.get("source_title", meta["source_id"])
        blocks.append(f"[{p.n}] {title} — {meta['section']}\n{p.document.page_content}")
    return "\n\n".join(blocks)


class GenerativeComposer:
    """A chat model's sentences, each verified; the extractive answer when too little survives."""

    def __init__(
        self,
        model: Runnable[Any, Any],
        verifier: Verifier,
        fallback: AnswerComposer,
        corpus: Corpus,
        settings: Settings,
    ) -> None:
        # One user message: some chat templates (Gemma's) drop a system message, and the rules must reach the model.
        prompt = ChatPromptTemplate.from_messages([("human", f"{SYSTEM}\n\n{HUMAN}")])
        self._writer = (prompt | model | PydanticOutputParser(pydantic_object=GeneratedAnswer)).with_config(
            run_name="generate"
        )
        self._verifier = verifier
        self._fallback = fallback
        self._corpus = corpus
        self._settings = settings
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.concurrency_limit)

    def compose(self, request: CompositionRequest) -> Composition:
        """Ask the model, verify each sentence, and fall back to quoting when too little holds."""
        if not request.judgement.covered or not request.context:
            return self._fallback.compose(request)
        passages = [QuotedPassage(n, doc) for n, doc in enumerate(request.context[: self._settings.llm_passages], 1)]
        view = request.view
        # A follow-up is asked in its conversation (the earlier question it follows, then itself).
        question = view.message if view.context == view.text else view.context
        try:
            # The copied context carries the run's config, so the model's run is a child of 'compose' in a trace.
            future = self._pool.submit(
                contextvars.copy_context().run,
                self._writer.invoke,
                {"passages": passage_block(passages), "question": question},
            )
            generated: GeneratedAnswer = future.result(timeout=self._settings.llm_timeout)
        except concurrent.futures.TimeoutError:
            return self._fall_back(request, "the model did not answer in time", 0)
        except Exception as error:  # any failure of the model or its output ends in the extractive answer
            return self._fall_back(request, f"the model's reply could not be used ({type(error).__name__})", 0)
        claims = [
            Claim(s.text, tuple(s.passages), tuple(s.quotes))
            for s in generated.sentences[: self._settings.llm_max_sentences]
        ]
        verdicts = self._verifier.verify(claims, passages)
        kept = [v for v in verdicts if v.kept]
        dropped = len(verdicts) - len(kept)
        for verdict in verdicts:
            if not verdict.kept:
                log.info("Dropped a generated sentence: %s.", verdict.reason)
        if not kept or len(kept) < self._settings.llm_min_kept_share * len(verdicts):
            reason = f"{dropped} of {len(verdicts)} sentences failed verification"
            return replace(self._fall_back(request, reason, dropped), sentences_generated=len(verdicts))
        return replace(self._cite(kept, dropped), sentences_generated=len(verdicts))

    def _fall_back(self, request: CompositionRequest, reason: str, dropped: int) -> Composition:
        log.info("Generative answer replaced by the extractive one: %s.", reason)
        composition = self._fallback.compose(request)
        return Composition(
            answer=composition.answer,
            answered=composition.answered,
            citations=composition.citations,
            closest_sections=composition.closest_sections,
            composer="extractive_fallback",
            sentences_dropped=dropped,
            notices=(*composition.notices, FALLBACK_NOTICE),
        )

    def _cite(self, kept: Sequence[Verdict], dropped: int) -> Composition:
        """The verified sentences with ``[n]`` markers; each citation quotes an exact slice of its source file."""
        numbers: dict[tuple[str, int, int], int] = {}
        citations: list[Citation] = []
        sentences: list[str] = []
        for verdict in kept:
            marks: list[int] = []
            for passage, start, end in verdict.spans:
                meta = passage.document.metadata
                at = int(meta["start"])
                key = (meta["source_id"], at + start, at + end)
                if key not in numbers:
                    numbers[key] = len(numbers) + 1
                    section = self._corpus.section(meta["source_id"], meta["section"])
                    quote = self._corpus.text_of(meta["source_id"])[key[1] : key[2]]
                    if quote != passage.document.page_content[start:end]:
                        raise AssistantError(
                            "A verified quote does not match its source file; rebuild the index with "
                            "'assistant index --force'."
                        )
                    citations.append(
                        Citation(
                            n=numbers[key],
                            source_id=meta["source_id"],
                            source_title=section.source.title,
                            section=meta["section"],
                            url=section.url,
                            quote=quote,
                        )
                    )
                if numbers[key] not in marks:
                    marks.append(numbers[key])
            text = verdict.text.rstrip()
            sentences.append(f"{text} " + "".join(f"[{n}]" for n in marks))
        answer = " ".join(sentences)
        return Composition(
            answer,
            True,
            citations,
            composer="generative",
            sentences_dropped=dropped,
            notices=(generated_notice(dropped),),
        )
