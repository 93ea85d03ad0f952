"""Schemathesis over the local API's own OpenAPI schema, against a real `outpost serve`: no request gets a 5xx.

Every operation in ``/openapi.json`` (/v1, /api, /health, /) is fuzzed with schema-shaped bodies through the
real browser guard (the requests go to 127.0.0.1 with JSON, so they pass it). The generation routes run the
real SmolLM2 when a generated body happens to name a model that exists; fuzzed names almost never do, so
those four routes get only a few generated examples, plus hand-picked bodies below that do reach the model
with hostile parameters (zero, negative and huge token counts, odd stops, huge seeds). Bounded to about a
minute: ``max_examples`` per operation, no deadline (2 shared cores).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from hubkit import ServerThread
from outpost import Outpost
from outpost.api import create_app
from outpost.settings import Settings

pytestmark = pytest.mark.slow  # a real server, the embedder and (for the generation routes) the LLM

GENERATION = re.compile(r"^/(v1/chat/completions|v1/completions|api/chat|api/generate)$")
LIMITS = {  # (fast routes, generation routes): examples per operation and generation mode
    GenerationMode.POSITIVE: (25, 4),
    GenerationMode.NEGATIVE: (10, 2),  # bodies that break the schema: must be a 4xx, never a crash
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[ServerThread]:
    home = tmp_path_factory.mktemp("fuzz-home")
    Outpost(home=home).ingest(sample_dir, collection="docs")  # so rag:docs exists and votes have answers
    with ServerThread(create_app(Settings(home=home, n_ctx=512, max_tokens=16))) as running:
        yield running


def operations(url: str) -> list[Any]:
    """Every operation the running server's /openapi.json documents (the dashboard's pages are not in it)."""
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    found = [result.ok() for result in schema.get_all_operations()]
    assert len(found) >= 16, [op.label for op in found]  # /health, /, 5 under /v1, 9 under /api
    return found


def fuzz(operation: Any, url: str, mode: GenerationMode, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        response = case.call(base_url=url, timeout=120)
        assert response.status_code < 500, f"{case.method} {case.path} {case.body!r} → {response.text[:300]}"

    one()


@pytest.mark.parametrize("mode", list(LIMITS), ids=lambda m: m.value)
@pytest.mark.parametrize("generation", [False, True], ids=["fast-routes", "generation-routes"])
def test_no_request_gets_a_server_error(server: ServerThread, mode: GenerationMode, generation: bool) -> None:
    examples = LIMITS[mode][generation]
    chosen = [op for op in operations(server.url) if bool(GENERATION.match(op.path)) == generation]
    if mode is GenerationMode.NEGATIVE:  # a GET without parameters has no schema to break
        chosen = [op for op in chosen if op.method.upper() == "POST"]
    assert chosen
    for operation in chosen:
        fuzz(operation, server.url, mode, examples)


HOSTILE_PARAMS: list[tuple[str, str, dict[str, Any]]] = [
    ("smollm2", "/v1/chat/completions", {"max_tokens": 0, "temperature": 1e9, "top_p": -3, "seed": 2**70}),
    ("rag:docs", "/v1/chat/completions", {"max_tokens": -5, "stop": ["", "\x00"], "seed": -1}),
    ("smollm2", "/v1/completions", {"max_tokens": 0, "stop": "", "prompt": ["", ""]}),  # was a 500
    ("rag:docs", "/v1/completions", {"max_tokens": -1, "seed": 2**64, "top_p": 0}),
    ("rag:docs", "/api/chat", {"options": {"num_predict": -2, "temperature": -5, "seed": 2**63, "top_p": 1e308}}),
    ("smollm2", "/api/generate", {"raw": True, "prompt": "", "options": {"num_predict": 0, "stop": ["", ""]}}),
    ("smollm2", "/api/generate", {"system": "\x00" * 10, "options": {"num_predict": 10**15}, "stream": True}),
    ("smollm2", "/v1/chat/completions", {"top_k": 2**40, "min_p": -1, "stop": ["\x00"] * 17}),  # a 422
    ("rag:docs", "/api/chat", {"options": {"top_k": 0, "min_p": 1.0, "stop": ["\x00", "]"], "num_predict": 4}}),
]


@pytest.mark.parametrize(("model", "path", "params"), HOSTILE_PARAMS)
def test_generation_with_hostile_parameters_is_never_a_server_error(
    server: ServerThread, model: str, path: str, params: dict[str, Any]
) -> None:
    body: dict[str, Any] = {"model": model, "stream": False}
    if path.endswith("chat/completions") or path == "/api/chat":
        body["messages"] = [{"role": "user", "content": "Vacation days?"}]
    else:
        body["prompt"] = "Vacation days?"
    body.update(params)
    with httpx.stream("POST", server.url + path, json=body, timeout=180) as response:
        response.read()
    assert response.status_code < 500, f"{path} {body} → {response.text[:300]}"
