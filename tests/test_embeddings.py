"""ONNX Runtime gives the torch model's vectors, is exported once, and keeps torch and scikit-learn out of serving."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from assistant.assistant import Assistant
from assistant.chunking import chunk_corpus, embedding_text, sentence_documents
from assistant.corpus import Corpus
from assistant.embeddings import ONNX_FILE, CachedEmbeddings, OnnxEmbeddings, make_embeddings, onnx_dir
from assistant.index import live_build
from assistant.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _sample_texts(corpus: Corpus) -> list[str]:
    chunks = chunk_corpus(corpus, 700)
    sentences = sentence_documents(corpus, chunks)
    # Every 9th chunk and sentence: long and short texts, article and statutes alike.
    texts = [embedding_text(doc) for doc in chunks[::9]] + [embedding_text(doc) for doc in sentences[::9]]
    return [*texts, "Is a remix a derivative work?", "stems", "¿Puedo usar stems de Spotify?"]


def test_onnx_vectors_match_torch_on_corpus_texts(settings: Settings, corpus: Corpus) -> None:
    onnx = make_embeddings(settings)
    torch_model = make_embeddings(settings.model_copy(update={"embedding_backend": "torch"}))
    assert isinstance(onnx, OnnxEmbeddings)
    texts = _sample_texts(corpus)
    a = np.asarray(onnx.embed_documents(texts))
    b = np.asarray(torch_model.embed_documents(texts))
    assert a.shape == b.shape == (len(texts), 384)
    cosines = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosines.min() >= 0.99999, f"lowest cosine {cosines.min():.6f} on {texts[int(cosines.argmin())][:80]!r}"
    query = np.asarray(onnx.embed_query(texts[0]))
    assert np.allclose(query, a[0], atol=1e-5)
    assert np.isclose(np.linalg.norm(query), 1.0, atol=1e-5)


def test_the_graph_is_exported_once_and_reused(settings: Settings) -> None:
    make_embeddings(settings)
    graph = onnx_dir(settings) / ONNX_FILE
    digest = hashlib.sha256(graph.read_bytes()).hexdigest()
    stamp = graph.stat().st_mtime_ns
    make_embeddings(settings)
    assert graph.stat().st_mtime_ns == stamp
    assert hashlib.sha256(graph.read_bytes()).hexdigest() == digest
    assert not list(graph.parent.glob(".*.partial")), "an unfinished export was left behind"


def test_a_serving_process_loads_neither_torch_nor_scikit_learn_and_never_writes_the_live_build(
    settings: Settings, assistant: Assistant
) -> None:
    build = live_build(settings.index_dir)
    assert build is not None

    def fingerprint() -> dict[str, str]:
        files = sorted(p for p in build.path.rglob("*") if p.is_file() and "decisions" not in p.parts)
        return {str(p.relative_to(build.path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    before = fingerprint()
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from assistant import Assistant, load_settings
        settings = load_settings(
            corpus_dir=Path(sys.argv[1]), index_dir=Path(sys.argv[2]), data_dir=Path(sys.argv[3])
        )
        answer = Assistant(settings).ask("Does Spotify allow extracting stems from its songs?")
        assert answer.answered and answer.citations, answer
        heavy = ("torch", "sentence_transformers", "transformers", "sklearn", "pandas", "scipy.stats", "joblib")
        loaded = sorted(m for m in heavy if m in sys.modules)
        print("loaded:" + ",".join(loaded))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANT_")}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(settings.corpus_dir),
            str(settings.index_dir),
            str(settings.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "loaded:", result.stdout
    assert fingerprint() == before, "opening the index for serving changed the live build's files"


@pytest.mark.parametrize("texts", [[], [""], ["a" * 20_000]])
def test_edge_inputs_give_unit_vectors_or_nothing(settings: Settings, texts: list[str]) -> None:
    embeddings = make_embeddings(settings)
    vectors = embeddings.embed_documents(texts)
    assert len(vectors) == len(texts)
    for vector in vectors:
        assert len(vector) == 384
        assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)


def test_the_vector_cache_embeds_each_text_once_across_processes(settings: Settings, tmp_path: Path) -> None:
    model = make_embeddings(settings)
    path = tmp_path / "cache" / "vectors.sqlite3"
    first = CachedEmbeddings(model, path)
    assert not path.exists(), "the cache file is created only when something is embedded"
    texts = ["Is a remix a derivative work?", "stems", "Is a remix a derivative work?", "¿Puedo usar stems?"]
    vectors = first.embed_documents(texts)
    assert (first.hits, first.misses) == (1, 3)
    assert np.allclose(vectors, model.embed_documents(texts), atol=1e-6)
    # A later build (a new object, as in another process) reads them back and embeds only the new text.
    again = CachedEmbeddings(model, path)
    assert np.allclose(again.embed_documents([*texts, "new text"])[:4], vectors, atol=0)
    assert (again.hits, again.misses) == (4, 1)
    assert again.embed_documents([]) == []


@pytest.mark.parametrize("damage", ["bytes flipped", "truncated", "stamp without checksum"])
def test_a_damaged_exported_graph_is_exported_again_not_run(settings: Settings, tmp_path: Path, damage: str) -> None:
    """Damage under ``index/models/``: the graph's recorded SHA-256 no longer holds, so it is exported anew."""
    make_embeddings(settings)
    private = settings.model_copy(update={"index_dir": tmp_path / "index"})
    folder = onnx_dir(private)
    folder.parent.mkdir(parents=True)
    shutil.copytree(onnx_dir(settings), folder, ignore=shutil.ignore_patterns("vectors.sqlite3*"))
    graph = folder / ONNX_FILE
    intact = hashlib.sha256(graph.read_bytes()).hexdigest()
    data = bytearray(graph.read_bytes())
    if damage == "bytes flipped":
        data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)
        graph.write_bytes(bytes(data))
    elif damage == "truncated":
        graph.write_bytes(bytes(data[: len(data) // 2]))
    else:
        stamp = folder / "export.json"
        stamp.write_text(stamp.read_text(encoding="utf-8").replace('"sha256"', '"old_sha256"'), encoding="utf-8")
    model = make_embeddings(private)
    assert hashlib.sha256(graph.read_bytes()).hexdigest() == intact  # the export is deterministic
    texts = ["Is a remix a derivative work?", "stems"]
    assert np.allclose(model.embed_documents(texts), make_embeddings(settings).embed_documents(texts), atol=1e-6)


def test_a_damaged_vector_cache_is_set_aside_and_the_vectors_stay_right(settings: Settings, tmp_path: Path) -> None:
    model = make_embeddings(settings)
    path = tmp_path / "cache" / "vectors.sqlite3"
    texts = ["Is a remix a derivative work?", "stems"]
    CachedEmbeddings(model, path).embed_documents(texts)
    path.write_bytes(b"not a database at all" * 1000)
    cache = CachedEmbeddings(model, path)
    assert np.allclose(cache.embed_documents(texts), model.embed_documents(texts), atol=1e-6)
    assert cache.misses == 2
    assert list(path.parent.glob("vectors.sqlite3.damaged-*"))
    assert CachedEmbeddings(model, path).embed_documents(texts[:1]) and path.is_file()
