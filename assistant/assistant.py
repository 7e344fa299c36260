"""The assistant: wires corpus → index → retrieval → answer → guardrails from one settings object."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from assistant.answer import AnswerComposer, CompositionRequest, not_covered
from assistant.conversation import parse_history, resolve
from assistant.corpus import ESCALATION_HEADING, Corpus, load_corpus
from assistant.errors import AssistantError
from assistant.escalation import EscalationDetector
from assistant.extractive import ExtractiveComposer
from assistant.guardrails import check_question, clean_text, guard
from assistant.index import (
    PARAGRAPHS,
    IndexBuild,
    build_index,
    expected_manifest,
    fresh_build,
    make_embeddings,
    open_sentence_store,
    open_vector_store,
    stored_chunks,
)
from assistant.query import PreparedQuery, QueryPreparer, content_tokens
from assistant.retrieval import BM25Retriever, DenseRetriever, HybridRetriever, Retriever, vocabulary
from assistant.schemas import Answer, Escalation, InputProblem, Message
from assistant.scope import ScopeCheck
from assistant.sentences import SentenceBank
from assistant.settings import Settings, load_settings

_console = Console(stderr=True)


def build_or_open_index(
    settings: Settings,
    force: bool = False,
    embeddings: Embeddings | None = None,
    corpus: Corpus | None = None,
) -> IndexBuild:
    """The live index, built first (with a progress bar) when missing, stale or forced."""
    corpus = corpus or load_corpus(settings.corpus_dir, settings.article_url)
    build = None if force else fresh_build(settings.index_dir, expected_manifest(corpus, settings))
    if build is not None:
        return build
    embeddings = embeddings or make_embeddings(settings)
    with Progress(
        TextColumn("[bold]Building the index[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("passages, sentences and paragraphs"),
        TimeElapsedColumn(),
        console=_console,
        transient=False,
    ) as bar:
        task = bar.add_task("embed", total=None)
        return build_index(
            corpus,
            settings,
            embeddings,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            on_wait=lambda: _console.print("Another process is building the index; waiting for it…"),
            force=force,
        )


def make_composer(
    settings: Settings, corpus: Corpus, sentences: SentenceBank, idf: dict[str, float] | None = None
) -> AnswerComposer:
    """The answer composer named by ``settings.composer``."""
    composers = {"extractive": lambda: ExtractiveComposer(corpus, sentences, settings.max_sentences, idf)}
    try:
        return composers[settings.composer]()
    except KeyError:
        raise AssistantError(
            f"Unknown composer '{settings.composer}'. Choose one of: {', '.join(sorted(composers))}."
        ) from None


class Assistant:
    """Answers questions about the article and its sources, with citations, notices and the disclaimer."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        composer: AnswerComposer | None = None,
        embeddings: Embeddings | None = None,
        corpus: Corpus | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        self.corpus = corpus or load_corpus(self.settings.corpus_dir, self.settings.article_url)
        self._embeddings = embeddings or make_embeddings(self.settings)
        build = build_or_open_index(self.settings, embeddings=self._embeddings, corpus=self.corpus)
        self.index_info: dict[str, Any] = {**build.manifest, "path": str(build.path)}
        self._store = open_vector_store(build, self._embeddings)
        chunks = stored_chunks(self._store)
        self._chunks = chunks
        self._bullet_chunk = next(doc for doc in chunks if doc.metadata["section"] == ESCALATION_HEADING)
        self._preparer = QueryPreparer(vocabulary(chunks))
        self._sentences = SentenceBank.from_store(
            open_sentence_store(build, self._embeddings),
            paragraphs=open_sentence_store(build, self._embeddings, PARAGRAPHS),
        )
        self._scope = ScopeCheck(self.corpus)
        triggers = self.corpus.escalation_triggers
        vectors = self._embeddings.embed_documents([t.text for t in triggers])
        self._bullet_vectors = {t.id: np.asarray(v, dtype=float) for t, v in zip(triggers, vectors, strict=True)}
        self._retriever = HybridRetriever(
            self._store, chunks, self._embeddings, self._preparer, self._sentences, self.settings.candidates
        )
        self._composer = composer or make_composer(self.settings, self.corpus, self._sentences, self._retriever.idf)
        # ask() and retrieve() (the eval calls both) embed the same prepared query: embed it once.
        self._query_vector = functools.lru_cache(maxsize=1024)(self._embed_query)
        self._detector = EscalationDetector(
            self.corpus.escalation_triggers,
            lambda m: self._preparer.prepare(m).text,
            headings={section.heading for section in self.corpus.sections},
        )

    # -- retrieval, also used by the eval suite -------------------------------------------------

    def retrieve(self, question: str, history: Sequence[Message | dict[str, Any]] = (), k: int = 10) -> list[Document]:
        """The assistant's own ranked passages for a question, exactly as ``ask`` retrieves them."""
        turns = parse_history(list(history))
        user_messages = [t.content for t in turns if t.role == "user"] + [clean_text(question)]
        _, _, passages = self._retrieve(clean_text(question), turns, self._escalations(user_messages), k)
        return passages

    def _retrieve(
        self, question: str, turns: list[Message], escalations: list[Escalation], k: int
    ) -> tuple[PreparedQuery, np.ndarray, list[Document]]:
        resolved = resolve(question, turns)
        prepared = dataclasses.replace(
            self._preparer.prepare(resolved.query),
            focus_terms=tuple(content_tokens(question)) if resolved.is_follow_up else (),
            # In a situation the answer may quote the bullets that apply to it, never one that does
            # not: next to the notices, another bullet would read as advice for this user.
            already_said=resolved.already_said | self._bullets_not_applying(escalations),
        )
        if escalations:
            # Answer the user's situation: the sections that speak to it come first.
            triggers = [e.trigger for e in escalations]
            prepared = dataclasses.replace(
                prepared,
                # The bullets that apply are retrieved with the related sections, so the answer can cite them.
                preferred_sections=(
                    *prepared.preferred_sections,
                    *self._detector.related_sections(triggers),
                    ESCALATION_HEADING,
                ),
                primary_sections=self._detector.primary_sections(triggers),
            )
        vector = self._query_vector(prepared.text)
        passages = self._retriever.retrieve_prepared(prepared, k, vector)
        if escalations and all(doc.metadata["section"] != ESCALATION_HEADING for doc in passages):
            # The answer cites the bullet that applies to the user, however its passage ranked.
            lowest = float(passages[-1].metadata["score"]) if passages else 0.0
            passages.append(
                self._bullet_chunk.model_copy(update={"metadata": {**self._bullet_chunk.metadata, "score": lowest}})
            )
        return prepared, vector, passages

    def baseline_retrievers(self) -> dict[str, Retriever]:
        """Plain dense (LangChain Chroma) and BM25 retrieval over the same chunks, for comparison."""
        return {"dense": DenseRetriever(self._store), "bm25": BM25Retriever(self._chunks)}

    # -- answering -------------------------------------------------------------------------------

    def ask(self, question: str, history: Sequence[Message | dict[str, Any]] = ()) -> Answer:
        """Answer one question; bad input gets an Answer that says what is wrong, never an exception."""
        checked = check_question(question, self.settings.max_question_chars)
        if checked.problem is not None:
            return self._reply(checked.message, problem=checked.problem)
        try:
            turns = parse_history(list(history))
        except ValueError as error:
            return self._reply(f"The conversation history could not be used: {error}.", problem="invalid_history")
        turns = (
            [
                Message(role=t.role, content=clean_text(t.content)[: self.settings.max_question_chars])
                for t in turns[-self.settings.max_history_turns :]
            ]
            if self.settings.max_history_turns
            else []
        )
        user_messages = [t.content for t in turns if t.role == "user"] + [clean_text(question)]
        escalations = self._escalations(user_messages)
        if not checked.question:
            return self._reply(
                f"I can only answer questions about the article “{self.corpus.article.title}” and the sources it "
                "cites. Ask, for example, whether a platform's terms allow stem extraction.",
                escalations=escalations,
                notices=checked.notices,
            )
        try:
            return self._answer(checked.question, turns, escalations, checked.notices)
        except AssistantError as error:
            return self._reply(str(error), escalations=escalations)

    def _answer(self, question: str, turns: list[Message], escalations: list[Escalation], notices: list[str]) -> Answer:
        prepared, vector, passages = self._retrieve(question, turns, escalations, self.settings.k)
        out_of_scope = self._scope.check(question)
        if out_of_scope is not None:
            composition = not_covered(passages, out_of_scope.reason)
        else:
            situation_vectors = (
                np.stack([self._bullet_vectors[e.trigger] for e in escalations]) if escalations else None
            )
            composition = self._composer.compose(
                CompositionRequest(
                    query=prepared, query_vector=vector, passages=passages, situation_vectors=situation_vectors
                )
            )
        answer = Answer(
            answer=composition.answer,
            answered=composition.answered,
            citations=composition.citations,
            closest_sections=composition.closest_sections,
            disclaimer=self.corpus.disclaimer,
        )
        return guard(answer, escalations, self.corpus.disclaimer, notices)

    def _embed_query(self, text: str) -> np.ndarray:
        vector = np.asarray(self._embeddings.embed_query(text), dtype=float)
        vector.setflags(write=False)  # shared by every caller of the cache
        return vector

    def _bullets_not_applying(self, escalations: list[Escalation]) -> set[str]:
        if not escalations:
            return set()
        fired = {e.trigger for e in escalations}
        return {f"- {t.text}" for t in self.corpus.escalation_triggers if t.id not in fired}

    def _escalations(self, user_messages: list[str]) -> list[Escalation]:
        return [
            Escalation(trigger=t.id, text=t.text, section=ESCALATION_HEADING, source_title=self.corpus.article.title)
            for t in self._detector.detect(user_messages)
        ]

    def _reply(
        self,
        message: str,
        problem: InputProblem | None = None,
        escalations: list[Escalation] | None = None,
        notices: list[str] | None = None,
    ) -> Answer:
        """A reply that is not an answer (bad input, nothing left to answer, an error): still guarded."""
        answer = Answer(answer=message, answered=False, disclaimer=self.corpus.disclaimer, input_problem=problem)
        return guard(answer, escalations or [], self.corpus.disclaimer, notices or [])
