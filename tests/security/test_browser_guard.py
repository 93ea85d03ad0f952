"""Browser → local API: a DNS-rebinding and CSRF matrix against a real `outpost serve` (uvicorn on 127.0.0.1).

The attacker is any web page the user visits. Its browser can send requests to 127.0.0.1 (CSRF), and with
DNS rebinding it can make `evil.example` resolve to 127.0.0.1 and read the answers (the request then says
`Host: evil.example`). Requests are written on a raw socket, so the Host header (even an empty or missing
one) is exactly what a browser or attacker would send. The expected outcome of every cell is computed from
the rule in docs/security.md, independently of the code under test, and every refused vote is checked to
have left the feedback queue untouched.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import numpy as np
import ollama
import openai
import pytest

from hubkit import ServerThread
from outpost.api import create_app
from outpost.api.guard import BrowserGuard, GuardPolicy
from outpost.feedback import FeedbackQueue
from outpost.llm.bundled import bundled_models
from outpost.models.load import loaded_models, unload_all
from outpost.models.registry import Registry
from outpost.settings import Settings

EVIL = "http://evil.example"


class ApiServer(ServerThread):
    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings))
        self.home = settings.home


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with ApiServer(Settings(home=tmp_path_factory.mktemp("guard-home"), n_ctx=512)) as running:
        yield running


def raw(port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"", http10: bool = False):
    """One request on a raw socket: (status, body bytes). Nothing is added but Content-Length and Connection."""
    lines = [f"{method} {path} {'HTTP/1.0' if http10 else 'HTTP/1.1'}", *(f"{k}: {v}" for k, v in headers)]
    lines += [f"Content-Length: {len(body)}", "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


# -- the matrix ---------------------------------------------------------------------------------------------

MISSING = None  # no Host header at all (HTTP/1.0): no browser sends such a request


def hosts(port: int) -> list[str | None]:
    return [
        f"127.0.0.1:{port}",
        f"localhost:{port}",
        f"[::1]:{port}",
        "evil.example",
        f"evil.example:{port}",
        "127.0.0.1.evil.example",
        "",
        MISSING,
    ]


def origins(host: str | None, port: int) -> list[str | None]:
    same = f"http://{host}" if host else f"http://127.0.0.1:{port}"
    return [None, same, EVIL, "null", f"http://localhost:{port + 1}"]


ROUTES = {"/v1": ("/v1/models", "/v1/feedback"), "/api": ("/api/tags", "/api/feedback"), "/": ("/", "/"),
          "/health": ("/health", "/health")}  # fmt: skip
KINDS = ("GET", "json", "text", "form")
SHAPED = {"/v1": lambda e: isinstance(e["error"]["message"], str), "/api": lambda e: isinstance(e["error"], str)}


def expected(port: int, host: str | None, origin: str | None, family: str, kind: str) -> int | None:
    """The rule, written out: 403 for a Host that is not loopback, 403 for an Origin that is not the Host the
    request was sent to, 415 for a state-changing /v1 or /api request that is not JSON; None = served."""
    if host not in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "", MISSING):
        return 403
    if origin is not None and origin != f"http://{host}":
        return 403
    if kind in ("text", "form") and family in ("/v1", "/api"):
        return 415
    return None


def send(port: int, host: str | None, origin: str | None, path: str, kind: str, answer_id: str):
    headers = [] if host is MISSING else [("Host", host)]
    headers += [("Origin", origin)] if origin is not None else []
    if kind == "GET":
        return raw(port, "GET", path, headers, http10=host is MISSING)
    vote = {"answer_id": answer_id, "helpful": True}
    body, ctype = {
        "json": (json.dumps(vote).encode(), "application/json"),
        "text": (json.dumps(vote).encode(), "text/plain"),  # <form enctype="text/plain"> or fetch(no-cors)
        "form": (urlencode(vote).encode(), "application/x-www-form-urlencoded"),
    }[kind]
    return raw(port, "POST", path, [*headers, ("Content-Type", ctype)], body, http10=host is MISSING)


@pytest.mark.parametrize("host_index", range(8))
def test_rebinding_and_csrf_matrix(server: ApiServer, host_index: int) -> None:
    port = server.port
    host = hosts(port)[host_index]
    queue = FeedbackQueue(server.home)
    wrong: list[str] = []
    for origin in origins(host, port):
        for family, (get_path, post_path) in ROUTES.items():
            for kind in KINDS:
                answer_id = queue.record("c", "q", np.zeros(4, np.float32), ["chunk"])
                path = get_path if kind == "GET" else post_path
                status, body = send(port, host, origin, path, kind, answer_id)
                want = expected(port, host, origin, family, kind)
                voted = queue.get(answer_id).voted_at is not None
                cell = f"Host={host!r} Origin={origin!r} {kind} {path}: {status} {body[:120]!r}"
                if want is not None and status != want:
                    wrong.append(f"expected {want}, got {cell}")
                if want is None and status in (403, 415):
                    wrong.append(f"expected it served, got {cell}")
                if want is None and kind == "GET" and status != 200:
                    wrong.append(f"expected 200, got {cell}")
                if voted != (want is None and kind == "json" and family in ("/v1", "/api")):
                    wrong.append(f"vote {'recorded' if voted else 'missing'}: {cell}")
                if want in (403, 415):  # the refusal speaks the route family's error shape
                    error = json.loads(body)
                    if not SHAPED.get(family, lambda e: "detail" in e)(error):
                        wrong.append(f"error shape: {cell}")
    queue.close()
    assert not wrong, f"{len(wrong)} wrong cells:\n" + "\n".join(wrong[:20])


def test_sec_fetch_site_and_duplicate_headers(server: ApiServer) -> None:
    port, host = server.port, f"127.0.0.1:{server.port}"
    assert raw(port, "GET", "/health", [("Host", host), ("Sec-Fetch-Site", "cross-site")])[0] == 403
    for site in ("same-origin", "none"):  # the dashboard's own requests, and a typed-in URL
        assert raw(port, "GET", "/health", [("Host", host), ("Sec-Fetch-Site", site)])[0] == 200
    # two Hosts: uvicorn's parser already answers 400; the guard would answer 403
    assert raw(port, "GET", "/health", [("Host", host), ("Host", "evil.example")])[0] in (400, 403)
    same = f"http://{host}"
    assert raw(port, "GET", "/health", [("Host", host), ("Origin", same), ("Origin", EVIL)])[0] == 403


def test_the_official_clients_send_what_the_guard_asks(server: ApiServer) -> None:
    """They send no Origin and do send JSON: unaffected (tests/api/test_api.py drives them in depth)."""
    assert any(m.id == "smollm2" for m in openai.OpenAI(base_url=f"{server.url}/v1", api_key="x").models.list())
    client = ollama.Client(host=server.url)
    assert any(m.model == "smollm2" for m in client.list().models)
    assert client.show("smollm2").details.family == "llama"  # a POST with a JSON body


def test_the_guard_runs_before_the_api_key_and_everything_else(tmp_path: Path) -> None:
    app = create_app(Settings(home=tmp_path, api_key="s3cret"))
    assert app.user_middleware[0].cls is BrowserGuard  # outermost: added last in create_app
    with ServerThread(app) as running:
        evil = raw(running.port, "GET", "/v1/models", [("Host", "evil.example"), ("Authorization", "Bearer s3cret")])
        assert evil[0] == 403  # refused for its Host, whatever key it carries
        assert raw(running.port, "GET", "/v1/models", [("Host", "localhost")])[0] == 401  # then the key check
        good = [("Host", "localhost"), ("Authorization", "Bearer s3cret")]
        assert raw(running.port, "GET", "/v1/models", good)[0] == 200


def test_configured_names_and_origins(tmp_path: Path) -> None:
    """``allowed_hosts`` serves a name (e.g. from /etc/hosts); ``allowed_origins`` lets one web app in, with CORS."""
    settings = Settings(
        home=tmp_path,
        allowed_hosts=["outpost.lan"],
        allowed_origins=["https://app.example"],
        serve_host="192.168.1.5",  # what `outpost serve --host 192.168.1.5` sets: that address is a fine Host
    )
    with ServerThread(create_app(settings)) as running:
        port = running.port
        assert raw(port, "GET", "/api/version", [("Host", f"outpost.lan:{port}")])[0] == 200
        assert raw(port, "GET", "/api/version", [("Host", f"192.168.1.5:{port}")])[0] == 200
        assert raw(port, "GET", "/api/version", [("Host", f"192.168.1.6:{port}")])[0] == 403
        assert raw(port, "GET", "/api/version", [("Host", f"other.lan:{port}")])[0] == 403
        preflight = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }
        with httpx.Client(base_url=running.url, timeout=60) as client:  # a fresh home hashes the bundled GGUF
            ok = client.options("/api/show", headers=preflight)
            assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
            bad = client.options("/api/show", headers={**preflight, "Origin": EVIL})
            assert bad.status_code == 403 and "access-control-allow-origin" not in bad.headers
            shown = client.post("/api/show", json={"model": "smollm2"}, headers={"Origin": "https://app.example"})
            assert shown.status_code == 200 and shown.headers["access-control-allow-origin"] == "https://app.example"
            cross = client.post(
                "/api/show",
                json={"model": "smollm2"},
                headers={"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"},
            )
            assert cross.status_code == 200  # an allowed origin is cross-site by nature


def test_a_non_loopback_bind_serves_its_own_address() -> None:
    lan = GuardPolicy.build([], [], "192.168.1.5")
    assert lan.host_allowed("192.168.1.5:11434") and lan.host_allowed("127.0.0.1:11434")
    assert not lan.host_allowed("10.0.0.9:11434") and not lan.host_allowed("evil.example:11434")
    everywhere = GuardPolicy.build([], [], "0.0.0.0")  # any address of this machine; still no rebindable name
    assert everywhere.host_allowed("10.0.0.9:11434") and everywhere.host_allowed("[fe80::1]:11434")
    assert not everywhere.host_allowed("evil.example:11434") and not everywhere.host_allowed("0.0.0.0.evil.example")
    loopback = GuardPolicy.build([], [], "127.0.0.1")
    assert loopback.host_allowed("app.localhost:11434") and loopback.host_allowed("LOCALHOST.")
    for bad in ("10.0.0.9", "localhost.evil.example", "evil.example", "a b", "[::1", "localhost:99999", "1.2.3.4:x"):
        assert not loopback.host_allowed(bad), bad


# -- model names over HTTP ----------------------------------------------------------------------------------


def test_http_model_names_are_registry_names_never_paths(server: ApiServer) -> None:
    gguf = str(bundled_models()["smollm2"])  # a real GGUF on disk: the CLI may load it by path, HTTP may not
    unload_all()
    for name in (gguf, "smollm2.gguf", "../../../../etc/passwd", "/etc/passwd", "~/model.gguf", "C:\\m.gguf"):
        for path, body in (
            ("/api/chat", {"model": name, "messages": [{"role": "user", "content": "hi"}], "stream": False}),
            ("/api/generate", {"model": name, "prompt": "", "stream": False}),
            ("/v1/chat/completions", {"model": name, "messages": [{"role": "user", "content": "hi"}]}),
            ("/v1/completions", {"model": name, "prompt": "hi"}),
        ):
            refused = httpx.post(server.url + path, json=body, timeout=60)
            assert refused.status_code == 404, (name, path, refused.text)
            assert "not accepted over HTTP" in refused.text and "No GGUF file" not in refused.text
        assert httpx.post(f"{server.url}/api/show", json={"model": name}, timeout=60).status_code in (400, 404)
    bad_rag = httpx.post(
        f"{server.url}/api/generate", json={"model": "rag:../../x", "prompt": "", "stream": False}, timeout=60
    )
    assert bad_rag.status_code == 400
    assert loaded_models() == []  # nothing was opened


def test_api_show_tags_ps_and_models_reveal_no_local_paths(server: ApiServer) -> None:
    registry = Registry(server.home)
    secret = "/home/alice/private/lora-adapter.gguf"
    registry.derive(
        "tuned", registry.get("smollm2"), f'FROM {bundled_models()["smollm2"]}\nADAPTER {secret}\nSYSTEM "Be brief."\n'
    )
    package_dir = str(bundled_models()["smollm2"].parent)
    texts = [httpx.post(f"{server.url}/api/show", json={"model": m}, timeout=60).text for m in ("smollm2", "tuned")] + [
        httpx.get(server.url + path, timeout=60).text for path in ("/api/tags", "/api/ps", "/v1/models")
    ]
    shown = httpx.post(f"{server.url}/api/show", json={"model": "tuned"}, timeout=60).json()
    assert shown["modelfile"].startswith("FROM smollm2\n") and "ADAPTER lora-adapter.gguf" in shown["modelfile"]
    for text in texts:
        assert str(server.home) not in text and package_dir not in text and "/home/alice" not in text, text[:300]


@pytest.mark.slow  # loads the real SmolLM2 once
def test_a_refused_request_loads_nothing_and_an_allowed_one_does(server: ApiServer) -> None:
    """A refused /api/generate with an empty prompt (Ollama's "load this model") has no effect at all."""
    unload_all()
    port = server.port
    load = json.dumps({"model": "smollm2", "prompt": "", "stream": False}).encode()
    attempts = [
        [("Host", "evil.example"), ("Content-Type", "application/json")],
        [("Host", f"127.0.0.1:{port}"), ("Origin", EVIL), ("Content-Type", "application/json")],
        [("Host", f"127.0.0.1:{port}"), ("Content-Type", "text/plain")],
    ]
    for headers in attempts:
        assert raw(port, "POST", "/api/generate", headers, load)[0] in (403, 415)
    assert loaded_models() == []
    status, _ = raw(
        port, "POST", "/api/generate", [("Host", f"localhost:{port}"), ("Content-Type", "application/json")], load
    )
    assert status == 200 and [m.name for m in loaded_models()] == ["smollm2"]  # so the check above could fail
    ps = httpx.get(f"{server.url}/api/ps", timeout=60).json()["models"]
    assert [m["name"] for m in ps] == ["smollm2"] and str(server.home) not in json.dumps(ps)
    unload_all()
