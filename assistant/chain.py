"""The assistant's pipeline as LangChain runnables.

One turn flows through seven named steps, each a runnable with its own run in a trace::

    check_input → situation → standalone_question → retrieve → compose → guard → present

Every step takes and returns a :class:`Turn` (the state of one question so far), except ``present``, which
turns the finished :class:`Turn` into the :class:`~assistant.schemas.Answer`. A step that finds the turn
already answered (bad input, nothing left to answer, an error) passes it on untouched, so the guard still
adds the notices and the disclaimer to every reply.

``present`` streams: ``chain.stream(...)`` yields :class:`AnswerChunk` pieces, the answer's verified
sentences first, then the guard's notices and lawyer notices, and the disclaimer always last. Chunks add
up (``a + b``) to the whole answer, as LangChain's message chunks do.

This module holds the shapes and the composition; what each step does lives with the
:class:`~assistant.assistant.Assistant`, which builds the chain from its settings.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NotRequired, Protocol, TypedDict

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import (
    ensure_config,
    get_callback_manager_for_config,
    patch_config,
    set_config_context,
)

from assistant.answer import Composition
from assistant.decisions.judge import Judgement
from assistant.features import QueryView
from assistant.guardrails import CheckedInput
from assistant.schemas import Answer, Escalation, Message

CHAIN_NAME = "stem_separation_assistant"
STEP_NAMES = ("check_input", "situation", "standalone_question", "retrieve", "compose", "guard", "present")


class AskInput(TypedDict):
    """What the chain takes: a question and, optionally, the conversation before it."""

    question: str
    history: NotRequired[Sequence[Message | dict[str, Any]]]


ChainInput = AskInput | str


@dataclass(frozen=True)
class Turn:
    """One question on its way through the pipeline; each step fills in its part."""

    question: str
    history: Sequence[Message | dict[str, Any]] = ()
    checked: CheckedInput | None = None
    turns: tuple[Message, ...] = ()
    situations: tuple[str, ...] = ()
    """Every situation the conversation has told, in article order."""
    about: frozenset[str] = frozenset()
    """The situations this turn is about (the rest were told earlier)."""
    escalations: tuple[Escalation, ...] = ()
    view: QueryView | None = None
    judgement: Judgement | None = None
    context: tuple[Document, ...] = ()
    """The retrieved passages, best first, as the composer saw them."""
    composition: Composition | None = None
    answer: Answer | None = None
    """Set by the guard, or earlier when the turn ends early (then still passed through the guard)."""
    finished: bool = False
    """True once the reply is decided before composing (bad input, nothing to answer, an error)."""


class Steps(Protocol):
    """The seven things one turn needs, as the assistant does them."""

    def check_input(self, turn: Turn) -> Turn:
        """Validate and clean the question and the history."""
        ...

    def situation(self, turn: Turn) -> Turn:
        """Whose situation the conversation tells, and the lawyer notices it calls for."""
        ...

    def standalone_question(self, turn: Turn) -> Turn:
        """The question as the decisions read it, with what earlier turns contribute."""
        ...

    def retrieve(self, turn: Turn) -> Turn:
        """Rank the corpus sentences and passages for the question."""
        ...

    def compose(self, turn: Turn) -> Turn:
        """Write the answer from the ranked passages (or say the corpus does not cover it)."""
        ...

    def guard(self, turn: Turn) -> Turn:
        """Attach the notices and the disclaimer: the last word on every reply."""
        ...


def to_turn(value: ChainInput | Turn) -> Turn:
    """The chain's input as a fresh :class:`Turn`: a string is a question without history."""
    if isinstance(value, Turn):
        return value
    if isinstance(value, str):
        return Turn(question=value)
    if isinstance(value, dict):
        question = value.get("question")
        history = value.get("history") or ()
        return Turn(question=question if isinstance(question, str) else "", history=history)
    return Turn(question="")


def traced(
    runnable: Runnable[Any, Any], func: Callable[[Any], Any], value: Any, config: RunnableConfig | None, run_type: str
) -> Any:
    """``func(value)`` as a run of ``runnable`` in a trace; runnables it invokes become the run's children.

    What ``Runnable._call_with_config`` does, without inspecting ``func``'s signature on every call (a third of
    the chain's overhead), and without setting up a child context when no callback handler is listening.
    """
    config = ensure_config(config)
    run = get_callback_manager_for_config(config).on_chain_start(
        None,
        value,
        run_type=run_type,
        name=config.get("run_name") or runnable.get_name(),
        run_id=config.pop("run_id", None),
    )
    try:
        if run.handlers or run.inheritable_handlers:
            with set_config_context(patch_config(config, callbacks=run.get_child())) as context:
                output = context.run(func, value)
        else:  # nobody is listening: no child context to set up (the sequence has set the config's context)
            output = func(value)
    except BaseException as error:
        run.on_chain_error(error)
        raise
    run.on_chain_end(output)
    return output


class Step(Runnable[Any, Turn]):
    """One named step of the pipeline (``Turn -> Turn``), traced: a lighter ``RunnableLambda`` (see :func:`traced`)."""

    def __init__(self, name: str, func: Callable[[Any], Turn], *, skip_finished: bool = True) -> None:
        self.name = name
        self._func = func
        self._skip_finished = skip_finished

    @property
    def InputType(self) -> type[Any]:
        """A :class:`Turn` (the first step also takes the chain's input)."""
        return Turn

    @property
    def OutputType(self) -> type[Turn]:
        """A :class:`Turn`."""
        return Turn

    def _run(self, value: Any) -> Turn:
        if self._skip_finished and isinstance(value, Turn) and value.finished:
            return value
        return self._func(value)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Turn:
        """Run the step as a traced run; runnables it invokes become its children."""
        output: Turn = traced(self, self._run, input, config, "chain")
        return output


def _steps(steps: Steps, last: str) -> Runnable[ChainInput, Turn]:
    runnable: Runnable[Any, Turn] = Step(STEP_NAMES[0], lambda value: steps.check_input(to_turn(value)))
    for name in STEP_NAMES[1 : STEP_NAMES.index(last) + 1]:
        runnable = runnable | Step(name, getattr(steps, name), skip_finished=name != "guard")
    return runnable


def retrieval_chain(steps: Steps) -> Runnable[ChainInput, Turn]:
    """The first four steps: the turn with its ranked passages (``context``), not yet answered."""
    return _steps(steps, "retrieve").with_config(run_name=f"{CHAIN_NAME}_retrieval")


def turn_chain(steps: Steps) -> Runnable[ChainInput, Turn]:
    """The pipeline up to the guarded reply, returning the whole :class:`Turn` (the eval reads its context)."""
    return _steps(steps, "guard").with_config(run_name=CHAIN_NAME)


def answer_chain(steps: Steps) -> Runnable[ChainInput, Answer]:
    """The whole pipeline: a question (with history) in, a guarded :class:`Answer` out, streamable."""
    return (_steps(steps, "guard") | Present()).with_config(run_name=CHAIN_NAME)


# -- streaming ------------------------------------------------------------------------------------


class AnswerChunk(Answer):
    """A piece of an :class:`Answer` as ``stream`` yields it; ``a + b`` joins pieces into the whole answer."""

    disclaimer: str = ""
    answered: bool = False

    def __add__(self, other: object) -> AnswerChunk:
        if not isinstance(other, Answer):
            return NotImplemented
        return AnswerChunk(
            answer_id=self.answer_id,
            answer=self.answer + other.answer,
            answered=self.answered or other.answered,
            citations=[*self.citations, *other.citations],
            escalations=[*self.escalations, *other.escalations],
            notices=[*self.notices, *other.notices],
            closest_sections=[*self.closest_sections, *other.closest_sections],
            disclaimer=other.disclaimer or self.disclaimer,
            rendered=other.rendered or self.rendered,
            blocks=other.blocks or self.blocks,
            input_problem=other.input_problem or self.input_problem,
            composer=other.composer or self.composer,
            sentences_dropped=self.sentences_dropped + other.sentences_dropped,
        )

    def to_answer(self) -> Answer:
        """The joined pieces as a plain :class:`Answer`."""
        return Answer(**self.model_dump())


_PIECE_END = re.compile(r"(?<=\])(?=\s)|(?<=\n)")
_MARKER = re.compile(r"\[(\d+)\]")


def answer_pieces(text: str) -> list[str]:
    """The answer text cut after each citation group and each line, so that the pieces join to the text."""
    pieces: list[str] = []
    start = 0
    for match in _PIECE_END.finditer(text):
        end = match.end()
        if end > start and text[start:end].strip():
            pieces.append(text[start:end])
            start = end
    if start < len(text) or not pieces:
        if pieces and not text[start:].strip():
            pieces[-1] += text[start:]
        else:
            pieces.append(text[start:])
    return pieces


def stream_answer(answer: Answer) -> Iterator[AnswerChunk]:
    """A guarded answer as pieces: its sentences with their citations, notices, lawyer notices, disclaimer last."""
    base = AnswerChunk(answer_id=answer.answer_id, answer="", answered=answer.answered, composer=answer.composer)
    cited: set[int] = set()
    for piece in answer_pieces(answer.answer):
        numbers = {int(n) for n in _MARKER.findall(piece)} - cited
        cited |= numbers
        yield base.model_copy(update={"answer": piece, "citations": [c for c in answer.citations if c.n in numbers]})
    rest = [c for c in answer.citations if c.n not in cited]
    if rest:
        yield base.model_copy(update={"citations": rest})
    if answer.notices:
        yield base.model_copy(update={"notices": answer.notices})
    if answer.escalations:
        yield base.model_copy(update={"escalations": answer.escalations})
    yield base.model_copy(
        update={
            "closest_sections": answer.closest_sections,
            "input_problem": answer.input_problem,
            "sentences_dropped": answer.sentences_dropped,
            "disclaimer": answer.disclaimer,
            "rendered": answer.rendered,
            "blocks": answer.blocks,
        }
    )


class Present(Runnable[Turn, Answer]):
    """The last step: the guarded :class:`Answer` of a finished turn, whole (``invoke``) or in pieces (``stream``)."""

    name: str | None = "present"

    @property
    def InputType(self) -> type[Turn]:
        """A finished :class:`Turn` (LangChain's name for the input type)."""
        return Turn

    @property
    def OutputType(self) -> type[Answer]:
        """An :class:`Answer` (LangChain's name for the output type)."""
        return Answer

    @staticmethod
    def _answer(turn: Turn) -> Answer:
        if turn.answer is None:
            raise ValueError("The turn reached 'present' without a guarded answer; the guard step must run first.")
        return turn.answer

    def invoke(self, input: Turn, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        """The whole answer."""
        answer: Answer = traced(self, self._answer, input, config, "parser")
        return answer

    def _pieces(self, turns: Iterator[Turn]) -> Iterator[Answer]:
        for turn in turns:
            yield from stream_answer(self._answer(turn))

    async def _apieces(self, turns: AsyncIterator[Turn]) -> AsyncIterator[Answer]:
        async for turn in turns:
            for chunk in stream_answer(self._answer(turn)):
                yield chunk

    def transform(self, input: Iterator[Turn], config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Answer]:
        """Pieces of each incoming turn's answer."""
        yield from self._transform_stream_with_config(input, self._pieces, config, run_type="parser")

    def stream(self, input: Turn, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[Answer]:
        """Pieces of the answer, disclaimer last."""
        yield from self.transform(iter([input]), config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Turn], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Answer]:
        """Pieces of each incoming turn's answer."""
        async for chunk in self._atransform_stream_with_config(input, self._apieces, config, run_type="parser"):
            yield chunk

    async def astream(self, input: Turn, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[Answer]:
        """Pieces of the answer, disclaimer last."""

        async def one() -> AsyncIterator[Turn]:
            yield input

        async for chunk in self.atransform(one(), config, **kwargs):
            yield chunk


def finish(turn: Turn, answer: Answer) -> Turn:
    """The turn with its reply decided early; the guard still runs on it."""
    return replace(turn, answer=answer, finished=True)
