"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis) against the real server on loopback.

Each of the four operations gets ``EXAMPLES`` requests that fit the schema, and each of the three that take input
``EXAMPLES`` that do not (wrong types, missing fields, odd strings, odd paths): 7 x 40 = 280 requests, about a minute
on two busy cores. Every answer must be
no server error (5xx) other than the documented 503 (busy or loading), in the status codes, content types and
schemas the document declares, and every error a JSON body carrying the disclaimer verbatim.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from server_fixtures import LiveServer

from assistant.corpus import Corpus

pytestmark = [pytest.mark.slow]

EXAMPLES = 40
_clients = itertools.count(1)


def check_response(response: Any, corpus: Corpus) -> None:
    """No crash; an error says what went wrong, in JSON, with the disclaimer."""
    status = response.status_code
    assert status < 500 or status == 503, f"server error {status}: {response.text[:300]}"
    if status >= 400:
        assert response.headers["content-type"][0].startswith("application/json"), response.headers
        body = response.json()
        assert body["disclaimer"] == corpus.disclaimer
        assert body["status"] == status and len(body["message"]) > 10


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_the_api_answers_any_request_within_its_schema(live_server: LiveServer, corpus: Corpus, mode: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.label for op in operations) == [
        "GET /api/brief/{answer_id}",
        "GET /api/health",
        "POST /api/ask",
        "POST /api/feedback",
    ]
    if mode == GenerationMode.NEGATIVE:  # /api/health takes nothing that could be malformed
        operations = [op for op in operations if op.label != "GET /api/health"]
    seen: dict[str, set[int]] = {}
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=GenerationMode(mode)))
        def fuzz(case: Case) -> None:
            # Each request speaks as its own client, so the rate limit answers none of them.
            n = next(_clients)
            headers = {"x-forwarded-for": f"10.{n // 250 % 250}.{n % 250}.1"}
            response = case.call(base_url=live_server.url, headers=headers, timeout=60)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            check_response(response, corpus)
            case.validate_response(
                response, checks=[status_code_conformance, content_type_conformance, response_schema_conformance]
            )

        fuzz()
    assert set(seen) == {op.label for op in operations}
