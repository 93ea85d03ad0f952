"""Schemathesis over the hub's own OpenAPI schema, against a real hub on 127.0.0.1 with a valid token.

Every operation in the schema gets generated requests (bounded by ``MAX_EXAMPLES`` to keep the run near
half a minute); each is sent twice, as generated and with its ``{name}`` swapped for the collection the
token may read, so the in-scope code (pack plans, feedback validation against the collection) is fuzzed
too, not just the 404 path. No answer may be a 5xx. The schema is served only with ``hub_api_docs`` on,
behind the token: the loader sends it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from hubkit import ServerThread
from outpost.hub import create_app
from outpost.hub.tokens import Tokens
from outpost.settings import Settings
from security.hubworld import synthetic_hub

MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], Path]]:
    home = tmp_path_factory.mktemp("hub-home")
    service = synthetic_hub(home)
    token = Tokens(service.home).create("fuzz", ["docs"], feedback=["docs"])[0]
    app = create_app(Settings(home=home, hub_api_docs=True, hub_train_every=0))
    with ServerThread(app) as server:
        yield server.url, {"Authorization": f"Bearer {token}"}, home


@pytest.fixture(scope="module")
def hub_schema(hub: tuple[str, dict[str, str], Path]) -> Any:
    url, headers, _ = hub
    return schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers)


def test_no_generated_request_gets_a_server_error(hub_schema: Any, hub: tuple[str, dict[str, str], Path]) -> None:
    """One Hypothesis run per operation. (``schemathesis.pytest.from_fixture`` would parametrize this, but it
    reads a pytest internal that pytest 9 removed, so the operations are walked here.)"""
    url, headers, _ = hub
    labels = []
    for result in hub_schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def fuzz(case: Any) -> None:
            response = case.call(base_url=url, headers=headers)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
            if case.path_parameters and "name" in case.path_parameters:
                case.path_parameters = {**case.path_parameters, "name": "docs"}
                response = case.call(base_url=url, headers=headers)
                assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])

        fuzz()
    assert "POST /v1/collections/{name}/feedback" in labels and len(labels) >= 9


def test_the_schema_needs_the_token(hub: tuple[str, dict[str, str], Path]) -> None:
    import httpx

    url, headers, _ = hub
    assert httpx.get(f"{url}/openapi.json").status_code == 401
    paths = httpx.get(f"{url}/openapi.json", headers=headers).json()["paths"]
    assert "/v1/collections/{name}/feedback" in paths and "/health" in paths
