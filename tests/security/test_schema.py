"""What the OpenAPI document says matches what the routes answer (app with a fake assistant, checked by schemathesis).

The live fuzzing (test_fuzz_api.py) rarely reaches a brief that exists, so the brief's three formats are checked here
on purpose: the HTML page and the Markdown file were once answered with content types the document did not declare.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_fixtures import FakeAssistant

from assistant.corpus import load_corpus
from assistant.server import create_app
from assistant.settings import Settings

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    settings = Settings(_env_file=None, index_dir=tmp_path / "index", data_dir=tmp_path / "data")  # type: ignore[call-arg]
    application = create_app(settings, FakeAssistant(load_corpus(settings.corpus_dir)))
    yield application
    application.state.service.close()


@pytest.mark.parametrize("fmt", ["json", "html", "markdown"])
def test_every_format_of_a_brief_is_documented(app: Any, fmt: str) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    asked = schema["/api/ask"]["POST"].Case(body={"question": "Can I release my remix?"}).call()
    assert asked.status_code == 200
    case = schema["/api/brief/{answer_id}"]["GET"].Case(
        path_parameters={"answer_id": asked.json()["answer_id"]}, query={"format": fmt}
    )
    response = case.call()
    assert response.status_code == 200
    case.validate_response(response, checks=CHECKS)


def test_health_and_errors_are_documented(app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for case in (
        schema["/api/health"]["GET"].Case(),
        schema["/api/feedback"]["POST"].Case(body={"answer_id": "f" * 32, "vote": "up"}),  # 404: never given
        schema["/api/brief/{answer_id}"]["GET"].Case(path_parameters={"answer_id": "nope"}),  # 400: malformed id
    ):
        response = case.call()
        case.validate_response(response, checks=CHECKS)
