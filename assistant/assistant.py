"""The assistant: wires corpus → index → decisions → retrieve → answer → guardrails from one settings object."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from threadpoolctl import threadpool_limits

from assistant.allocator import startup_heap
from assistant.answer import AnswerComposer, CompositionRequest
from assistant.bank import Bank, bank_dir, load_bank
from assistant.chain import ChainInput, Turn, answer_chain, finish, retrieval_chain, turn_chain
from assistant.conversation import (
    EarlierAnswer,
    TurnRequest,
    ViewBuilder,
    conversation,
    earlier_answer,
    parse_history,
    points_at_an_item,
    quoted_rows,
    referenced_item,
    user_messages,
)
from assistant.corpus import ESCALATION_HEADING, ESCALATION_TRIGGER_IDS, Corpus, load_corpus
from assistant.decisions.judge import Judge, Judgement, bullet_rows
from assistant.decisions.models import Decisions
from assistant.decisions.store import ensure_decisions
from assistant.embeddings import make_embeddings, vector_cache
from assistant.errors import AssistantError, IndexNotReadyError
from assistant.extractive import ExtractiveComposer
from assistant.features import QueryView
from assistant.guardrails import check_question, clean_text, guard
from assistant.index import (
    IndexBuild,
    build_index,
    build_records,
    expected_manifest,
    fresh_build,
    model_id,
    open_table,
    open_vector_store,
    table_from_records,
)
from assistant.query import QueryPreparer
from assistant.retrieval import BM25Retriever, DenseRetriever, passages
from assistant.schemas import Answer, Citation, Escalation, InputProblem, Message
from assistant.sentences import SentenceTable
from assistant.settings import Settings, load_settings
from assistant.tokens import words

if TYPE_CHECKING:  # a chat model is only ever passed in: no need to import its base class to serve
    from langchain_core.language_models import BaseChatModel

    from assistant.index_server import Version

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
        TextColumn("distinct texts embedded"),
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


def vocabulary(table: SentenceTable) -> Counter[str]:
    """How often each word occurs in the corpus chunks (for typo repair)."""
    found: Counter[str] = Counter()
    for doc in table.chunks:
        found.update(w for w in words(f"{doc.metadata['section']} {doc.page_content}") if w.isalpha())
    return found


def make_composer(
    settings: Settings,
    corpus: Corpus,
    extractive: ExtractiveComposer,
    embeddings: Embeddings,
    build: IndexBuild,
    chat_model: BaseChatModel | None = None,
) -> AnswerComposer:
    """The answer composer ``settings.composer`` names ('auto': generative with a chat model or ASSISTANT_LLM).

    ``extractive`` is the default composer, and the generative one's fallback.
    """
    wanted = settings.llm or chat_model is not None
    kind = settings.composer if settings.composer != "auto" else ("generative" if wanted else "extractive")
    if kind == "extractive":
        return extractive
    from assistant.decisions.support import ensure_support
    from assistant.generative import GenerativeComposer
    from assistant.generative import chat_model as make_chat_model
    from assistant.verify import Verifier

    with _console.status("Fitting the support test on the labelled sentence pairs…"):
        support = ensure_support(build.path / "support", corpus, embeddings.embed_documents, settings.support_precision)
    verifier = Verifier(support, embeddings.embed_documents, corpus.urls)
    model = chat_model if chat_model is not None else make_chat_model(settings)
    return GenerativeComposer(model, verifier, extractive, corpus, settings)


@dataclass(frozen=True)
class Engine:
    """Everything the assistant answers from: the index build, its sentence table, and the fitted decisions."""

    build: IndexBuild
    table: SentenceTable
    views: ViewBuilder
    bank: Bank
    decisions: Decisions
    report: dict[str, Any]
    corpus: Corpus
    """The corpus the build was made from (a published build brings its own)."""


def prepare(
    settings: Settings,
    *,
    force: bool = False,
    retrain: bool = False,
    embeddings: Embeddings | None = None,
    corpus: Corpus | None = None,
    bank: Bank | None = None,
) -> Engine:
    """Open (or build) the index and the decisions fitted against it (training them first when missing)."""
    corpus = corpus or load_corpus(settings.corpus_dir, settings.article_url)
    embeddings = embeddings or make_embeddings(settings)
    # Building and fitting embed the corpus and the bank through the on-disk vector cache; questions do not.
    cached = vector_cache(settings, embeddings)
    build = build_or_open_index(settings, force=force, embeddings=cached, corpus=corpus)
    table = open_table(build, corpus)
    preparer = QueryPreparer(vocabulary(table))
    views = ViewBuilder(preparer, embeddings.embed_documents)
    bank = bank or load_bank(corpus, settings.bank_dir)
    with _console.status("Fitting the decisions on the question bank…") as status:

        def progress(message: str) -> None:
            status.update(f"Fitting the decisions on the question bank: {message}…")

        decisions, report = ensure_decisions(
            build,
            bank,
            settings,
            table,
            ViewBuilder(preparer, cached.embed_documents),
            progress=progress,
            force=retrain,  # a forced build is a new folder: its decisions come from the cache or a fit
        )
    return Engine(build, table, views, bank, decisions, report, corpus)


def publish(settings: Settings, engine: Engine) -> tuple[Version, bool]:
    """Publish a prepared engine's build to the Chroma server as the live version, unless it already is.

    Returns the live version and whether it was published now.
    """
    from assistant.decisions.store import decisions_path
    from assistant.index_server import IndexServer, NoPublishedBuildError, publishable_files

    server = IndexServer(settings)
    files = publishable_files(
        engine.corpus.directory, decisions_path(engine.build, engine.bank, settings), settings.bank_dir or bank_dir()
    )
    try:
        live = server.live()
    except NoPublishedBuildError:
        live = None
    if live is not None and live.manifest.get("source_build") == engine.build.path.name:
        checksums = {path: hashlib.sha256(data).hexdigest() for path, data in sorted(files.items())}
        if live.manifest.get("files") == checksums:
            return live, False
    with _console.status("Publishing the build to the index server…"):
        return server.publish(engine.build, build_records(engine.build), files), True


def open_published(
    settings: Settings, embeddings: Embeddings, *, corpus: Corpus | None = None, bank: Bank | None = None
) -> Engine:
    """The build the Chroma server serves (the live one, or ``settings.chroma_build``), with its decisions.

    Nothing is built or fitted here: the records, the corpus and the fitted decisions all come from the version
    ``assistant index`` published, so every server answers alike.
    """
    from assistant.decisions.store import MODEL_FILE, REPORT_FILE, decisions_path, load_decisions
    from assistant.index_server import BANK, SERVED, IndexServer

    server = IndexServer(settings)
    version = server.version(settings.chroma_build)
    wanted = model_id(settings.embedding_model)
    if version.manifest.get("embedding_model") != wanted:
        raise IndexNotReadyError(
            f"Build {version.build_id} in the index server was embedded with {version.manifest.get('embedding_model')}"
            f", but this server embeds questions with {wanted}. Publish a build made with this model."
        )
    build = server.materialize(version, settings.index_dir / SERVED)
    served = load_corpus(build.path / "corpus", settings.article_url)
    if served.fingerprint != version.manifest.get("corpus_fingerprint"):
        raise IndexNotReadyError(
            f"Build {version.build_id}'s corpus files do not match its manifest. Publish a new one with 'assistant "
            "index'."
        )
    if corpus is not None and corpus.fingerprint == served.fingerprint:
        served = corpus
    table = table_from_records(server.records(version), served)
    views = ViewBuilder(QueryPreparer(vocabulary(table)), embeddings.embed_documents)
    published_bank = build.path / BANK
    # The bank the publisher fitted on (a build published before banks travelled with it: this server's own).
    bank = bank or load_bank(served, published_bank if any(published_bank.glob("*.jsonl")) else settings.bank_dir)
    path = decisions_path(build, bank, settings)
    if not (path / MODEL_FILE).is_file():
        published = sorted(p.name for p in (build.path / "decisions").glob("*") if p.is_dir())
        raise IndexNotReadyError(
            f"Build {version.build_id} in the index server holds decisions fitted for another question bank, "
            f"trainer or decision settings ({', '.join(published) or 'none'}; this server needs "
            f"{path.name}). Publish it again with 'assistant index' from this release, or serve it with the "
            "release that published it."
        )
    report = json.loads((path / REPORT_FILE).read_text(encoding="utf-8"))
    return Engine(build, table, views, bank, load_decisions(path), report, served)


class Assistant:
    """Answers questions about the article and its sources, with citations, notices and the disclaimer."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        composer: AnswerComposer | None = None,
        chat_model: BaseChatModel | None = None,
        embeddings: Embeddings | None = None,
        corpus: Corpus | None = None,
        bank: Bank | None = None,
    ) -> None:
        with startup_heap():  # what is built here lives as long as the assistant: keep the collector off it
            self._open(settings, composer, chat_model, embeddings, corpus, bank)

    def _open(
        self,
        settings: Settings | None,
        composer: AnswerComposer | None,
        chat_model: BaseChatModel | None,
        embeddings: Embeddings | None,
        corpus: Corpus | None,
        bank: Bank | None,
    ) -> None:
        self.settings = settings or load_settings()
        self._embeddings = embeddings or make_embeddings(self.settings)
        if self.settings.chroma_url:
            engine = open_published(self.settings, self._embeddings, corpus=corpus, bank=bank)
        else:
            corpus = corpus or load_corpus(self.settings.corpus_dir, self.settings.article_url)
            engine = prepare(self.settings, embeddings=self._embeddings, corpus=corpus, bank=bank)
        self.corpus = engine.corpus
        self._build = engine.build
        self.table = engine.table
        self._views = engine.views
        self.bank = engine.bank
        self.decisions, self.decisions_report = engine.decisions, engine.report
        self.index_info: dict[str, Any] = {
            **engine.build.manifest,
            "build": engine.build.manifest.get("build", engine.build.path.name),
            "path": str(engine.build.path),
            "decisions": self.decisions_report["key"],
            "bank_fingerprint": self.decisions_report["bank_fingerprint"],
        }
        self._judge = Judge(self.decisions, self.table, self.settings.candidates)
        self._extractive = ExtractiveComposer(
            self.corpus,
            self.table,
            self.decisions.ranker.support_threshold,
            self.settings.max_support,
            self.settings.max_list_items,
        )
        self._composer = composer or make_composer(
            self.settings, self.corpus, self._extractive, self._embeddings, self._build, chat_model
        )
        self._bullets = bullet_rows(self.table)
        self._triggers = {t.id: t for t in self.corpus.escalation_triggers}
        self._answers: OrderedDict[str, list[Citation]] = OrderedDict()
        self.chain: Runnable[ChainInput, Answer] = answer_chain(self)
        """The whole pipeline as one LangChain runnable: ``invoke``, ``batch``, ``stream``, ``astream``."""
        self.turns: Runnable[ChainInput, Turn] = turn_chain(self)
        """The same pipeline returning the whole :class:`~assistant.chain.Turn` (context and answer)."""
        self.retrieval: Runnable[ChainInput, Turn] = retrieval_chain(self)
        """The pipeline's first four steps: the turn with its ranked passages, not yet answered."""
        threadpool_limits(limits=self.settings.blas_threads, user_api="blas")

    # -- one turn, as the decisions see it ---------------------------------------------------------

    def _view(self, question: str, turns: Sequence[Message], recompose: bool = True) -> QueryView:
        earlier = user_messages(turns)
        answer = earlier_answer(self.table, turns, self._answers.get)
        if not answer.rows and recompose and points_at_an_item(question):
            # An earlier reply this assistant cannot identify (no answer id or citations came back with it):
            # its points are taken to be those of this assistant's answer to the question it followed.
            answer = EarlierAnswer(self._previous_rows(turns))
        item = referenced_item(question, answer, self.table)
        excluded = set(answer.rows)
        if item is not None:
            excluded -= {s.row for s in self.table.paragraph(item)}
        request = TurnRequest(question, tuple(earlier), item.text if item else None, frozenset(excluded))
        return self._views.views([request])[0]

    def _previous_rows(self, turns: Sequence[Message]) -> tuple[int, ...]:
        """The rows this assistant would quote in answer to the last earlier user message."""
        last = max((i for i, t in enumerate(turns) if t.role == "user"), default=None)
        if last is None:
            return ()
        before = turns[:last]
        message = turns[last].content
        _, about = self.situations(message, user_messages(before))
        view = self._view(message, before, recompose=False)
        # The extractive composer says which rows an answer quotes without asking a model again.
        composition = self._extractive.compose(CompositionRequest(view, self._judgement(view, sorted(about))))
        return quoted_rows(self.table, composition.citations)

    def situations(self, message: str, earlier: Sequence[str]) -> tuple[list[str], set[str]]:
        """The user's situations (article order) and those this turn is about (the rest were told earlier).

        A situation stays attached to a conversation once told; the reply is about it when this message
        tells it, or when it is first recognised in this turn with the help of earlier messages.
        """
        now, alone = self._judge.triggers([conversation(message, earlier), message])
        told = self._judge.triggers([conversation(earlier[j], earlier[:j]) for j in range(len(earlier))])
        before = set().union(*told) if told else set()
        fired = now | before
        about = alone | (now - before)
        return [t for t in ESCALATION_TRIGGER_IDS if t in fired], about

    def _judgement(self, view: QueryView, situation: Sequence[str]) -> Judgement:
        return self._judge.judge(view, self._judge.question_features([view]), situation)

    # -- retrieval ---------------------------------------------------------------------------------

    def passages(self, question: str, history: Sequence[Message | dict[str, Any]] = (), k: int = 10) -> list[Document]:
        """The ``k`` best passages for a question, ranked as ``ask`` ranks them (the chain's first four steps)."""
        return self.ranked_passages(self.retrieval.invoke({"question": question, "history": history}), k)

    def ranked_passages(self, turn: Turn, k: int) -> list[Document]:
        """The ``k`` best passages of a turn that has been through the retrieval step (none if it ended before)."""
        return [] if turn.judgement is None else passages(self.table, turn.judgement.ranking, k)

    def as_retriever(self, k: int = 6) -> PassageRetriever:
        """The assistant's own ranking as a LangChain retriever, to compose into other chains."""
        return PassageRetriever(assistant=self, k=k)

    def baseline_retrievers(self) -> dict[str, BaseRetriever]:
        """Plain dense (LangChain Chroma) and BM25 retrieval over the same chunks, for comparison."""
        return {
            "dense": DenseRetriever(store=open_vector_store(self._build, self._embeddings)),
            "bm25": BM25Retriever(chunks=list(self.table.chunks)),
        }

    # -- answering -------------------------------------------------------------------------------

    def _turns(self, turns: list[Message]) -> list[Message]:
        if not self.settings.max_history_turns:
            return []
        limit = self.settings.max_question_chars
        return [
            t.model_copy(update={"content": clean_text(t.content)[:limit]})
            for t in turns[-self.settings.max_history_turns :]
        ]

    # -- the chain's steps (assistant/chain.py composes them) ---------------------------------------

    def check_input(self, turn: Turn) -> Turn:
        """Validate and clean the question and the history; bad input ends the turn with a reply saying why."""
        learned = self.decisions.requests.split if self.settings.request_filter == "learned" else None
        checked = check_question(turn.question, self.settings.max_question_chars, learned)
        turn = replace(turn, checked=checked)
        if checked.problem is not None:
            return finish(turn, self._reply(checked.message, problem=checked.problem))
        try:
            turns = self._turns(parse_history(list(turn.history)))
        except ValueError as error:
            message = f"The conversation history could not be used: {error}."
            return finish(turn, self._reply(message, problem="invalid_history"))
        return replace(turn, turns=tuple(turns))

    def situation(self, turn: Turn) -> Turn:
        """Whose situation the conversation tells; a message with nothing left to answer ends here."""
        fired, about = self.situations(clean_text(turn.question), user_messages(turn.turns))
        turn = replace(
            turn, situations=tuple(fired), about=frozenset(about), escalations=tuple(self._escalations(fired, about))
        )
        if turn.checked is not None and not turn.checked.question:
            message = (
                f"I can only answer questions about the article “{self.corpus.article.title}” and the sources it "
                "cites. Ask, for example, whether a platform's terms allow stem extraction."
            )
            return finish(turn, self._reply(message, answered=False))
        return turn

    def standalone_question(self, turn: Turn) -> Turn:
        """The question as the decisions read it: with the earlier turns it follows up on."""
        question = turn.checked.question if turn.checked is not None else clean_text(turn.question)
        view = self._view(question, list(turn.turns))
        return replace(turn, view=view)

    def retrieve(self, turn: Turn) -> Turn:
        """Rank the corpus sentences (and so the passages) for the question, and judge whether it is covered."""
        if turn.view is None:
            raise ValueError("retrieve needs the standalone question; run the 'standalone_question' step first.")
        judgement = self._judgement(turn.view, sorted(turn.about))
        context = passages(self.table, judgement.ranking, self.settings.context_passages)
        return replace(turn, judgement=judgement, context=tuple(context))

    def compose(self, turn: Turn) -> Turn:
        """Write the answer with the configured composer; an error ends the turn with a reply saying so."""
        if turn.view is None or turn.judgement is None:
            raise ValueError("compose needs the ranked passages; run the 'retrieve' step first.")
        bullets = tuple(self._bullets[t] for t in ESCALATION_TRIGGER_IDS if t in turn.about)
        request = CompositionRequest(turn.view, turn.judgement, bullets, turn.context)
        try:
            composition = self._composer.compose(request)
        except AssistantError as error:
            return finish(turn, self._reply(str(error)))
        return replace(turn, composition=composition)

    def guard(self, turn: Turn) -> Turn:
        """Attach the lawyer notices, the guard's notes and the disclaimer, and render: every reply ends here."""
        notices = list(turn.checked.notices) if turn.checked is not None else []
        if turn.answer is not None:
            answer = turn.answer
        elif turn.composition is not None:
            composition = turn.composition
            notices = [*composition.notices, *notices]
            answer = Answer(
                answer=composition.answer,
                answered=composition.answered,
                citations=composition.citations,
                closest_sections=composition.closest_sections,
                disclaimer=self.corpus.disclaimer,
                composer=composition.composer,
                sentences_dropped=composition.sentences_dropped,
            )
            self._remember(answer)
        else:
            raise ValueError("guard needs a composed answer or an early reply; run the steps before it.")
        guarded = guard(answer, list(turn.escalations), self.corpus.disclaimer, notices)
        return replace(turn, answer=guarded, finished=True)

    # -- answering -------------------------------------------------------------------------------

    def ask(self, question: str, history: Sequence[Message | dict[str, Any]] = ()) -> Answer:
        """Answer one question (``chain.invoke``); bad input gets an Answer saying what is wrong, never an exception."""
        return self.chain.invoke({"question": question, "history": history})

    def run(self, question: str, history: Sequence[Message | dict[str, Any]] = ()) -> Turn:
        """One question through the pipeline, returning the whole :class:`Turn`: its context and its answer."""
        return self.turns.invoke({"question": question, "history": history})

    def _remember(self, answer: Answer) -> None:
        if not self.settings.answers_remembered:
            return
        self._answers[answer.answer_id] = answer.citations
        while len(self._answers) > self.settings.answers_remembered:
            self._answers.popitem(last=False)

    def _escalations(self, fired: Sequence[str], about: set[str]) -> list[Escalation]:
        return [
            Escalation(
                trigger=trigger,
                text=self._triggers[trigger].text,
                section=ESCALATION_HEADING,
                source_title=self.corpus.article.title,
                compact=trigger not in about,
            )
            for trigger in fired
        ]

    def _reply(self, message: str, problem: InputProblem | None = None, answered: bool = False) -> Answer:
        """A reply that is not an answer (bad input, nothing left to answer, an error); the guard step follows."""
        return Answer(answer=message, answered=answered, disclaimer=self.corpus.disclaimer, input_problem=problem)


def build_chain(
    settings: Settings | None = None, *, chat_model: BaseChatModel | None = None
) -> Runnable[ChainInput, Answer]:
    """The whole assistant as one LangChain runnable, from settings (``ASSISTANT_*`` when none are given).

    ``invoke({"question": ..., "history": [...]})`` (or a plain question string) returns an
    :class:`~assistant.schemas.Answer`; ``batch``, ``stream`` and ``astream`` work as in any LangChain chain.
    A ``chat_model`` (any LangChain chat model) makes the answers generative, each sentence verified.
    """
    return Assistant(settings, chat_model=chat_model).chain


class PassageRetriever(BaseRetriever):
    """The assistant's ranking as a LangChain retriever: chunks ranked by their best sentence, as ``ask`` ranks them.

    ``invoke(question)`` returns ``k`` chunks with ``metadata['score']`` (the ranker's probability for the
    chunk's best sentence); ``invoke(question, k=n, history=[...])`` passes another depth and earlier turns.
    """

    assistant: Assistant
    k: int = 6

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        history: Sequence[Message | dict[str, Any]] = (),
    ) -> list[Document]:
        return self.assistant.passages(query, history, k or self.k)
