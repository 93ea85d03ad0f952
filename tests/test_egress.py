"""Zero egress (issue 13): a whole laptop session in a child process, every connection it attempts on record.

A ``sitecustomize.py`` on the child's PYTHONPATH installs a Python audit hook (``sys.addaudithook``) that logs
every ``socket.connect`` address and every ``socket.getaddrinfo`` host, in the child and in every Python
process it starts (``outpost serve``, ingest's parse workers). The session runs the real CLI commands
(quickstart, ingest, search, ask, collections, models list/fit, eval on a small BEIR-format set written here)
in-process through typer's runner, then ``outpost serve`` as its own process with OpenAI and Ollama calls.

The session runs in ``local`` mode, where only loopback may appear although a remote is configured; then it
switches to ``auto`` and asks ``--remote`` on a public collection: the only other address then is the
configured remote's, 127.0.0.2 on a port where nothing listens: a loopback address that is not the one
Outpost serves on, so the attempt is seen, refused, and falls back (the test machine may send nothing beyond
loopback, so the "remote" is the one thing faked). The hook sees sockets opened through
Python, which is every socket Outpost's own code, httpx, uvicorn and the Hugging Face libraries open.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hubkit import free_port
from outpost.audit import AuditLog

pytestmark = pytest.mark.slow

REMOTE_HOST = "127.0.0.2"  # loopback, but not an address Outpost itself uses: nothing listens there

SITECUSTOMIZE = """
import json, os, sys

_LOG = os.environ.get("EGRESS_LOG")


def _egress_hook(event, args):
    if event == "socket.connect":
        address = args[1]
        entry = {"event": "connect", "address": list(address) if isinstance(address, tuple) else str(address)}
    elif event == "socket.getaddrinfo":
        entry = {"event": "getaddrinfo", "address": [str(args[0]), args[1]]}
    else:
        return
    with open(_LOG, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"pid": os.getpid(), **entry}, default=str) + "\\n")


if _LOG:
    sys.addaudithook(_egress_hook)
"""

SESSION = """
import sys, time, subprocess, os
import httpx
from typer.testing import CliRunner
from outpost.cli.main import app

home, docs, beir, port, log = sys.argv[1:6]
runner = CliRunner()


def cli(*args):
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, (args, result.output)
    return result.output


cli("quickstart")
cli("ingest", docs, "--collection", "pub", "--quiet")
cli("collections", "label", "pub", "public")
cli("remote", "add", "far", "--url", "http://{remote}:9/v1", "--model", "big", "--price-in", "3")
cli("search", "vacation days", "--collection", "pub")
cli("ask", "How many vacation days do new hires get?", "--collection", "pub", "--max-tokens", "4", "--remote")
cli("ask", "How many vacation days do new hires get?", "--collection", "quickstart", "--max-tokens", "4")
cli("collections")
cli("models", "list")
cli("models", "fit", "--volume", "1000")
cli("eval", beir, "--limit", "3", "--json")
cli("audit", "--json")
cli("usage")

server = subprocess.Popen([sys.executable, "-m", "outpost", "serve", "--port", port])
try:
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    assert httpx.get(f"{url}/v1/models").status_code == 200
    body = {"model": "rag:pub", "messages": [{"role": "user", "content": "Vacation days?"}], "max_tokens": 4}
    assert httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).status_code == 200
    assert httpx.get(f"{url}/api/tags").status_code == 200
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "stream": False,
            "options": {"num_predict": 2}}
    assert httpx.post(f"{url}/api/chat", json=body, timeout=300).status_code == 200
finally:
    server.terminate()
    server.wait(timeout=60)

# phase two: the same laptop switched to auto; asking for the remote on a public collection tries it
with open(log, "a") as fh:
    fh.write('{"event": "phase", "address": "auto"}\\n')
with open(os.path.join(home, "config.toml"), "w") as fh:
    fh.write('[routing]\\nmode = "auto"\\ntimeout_s = 3\\n')
cli("ask", "How many vacation days do new hires get?", "--collection", "pub", "--max-tokens", "4", "--remote")
print("SESSION DONE")
""".replace("{remote}", REMOTE_HOST)

LOOPBACK = {"127.0.0.1", "::1", "localhost", "::ffff:127.0.0.1"}


def _beir(folder: Path) -> Path:
    folder.mkdir()
    (folder / "qrels").mkdir()
    corpus = [
        ("d1", "New hires get twenty vacation days in their first year."),
        ("d2", "Travel must be booked through the portal, economy class on short flights."),
        ("d3", "Passwords are reset at the service desk on the ground floor."),
    ]
    queries = [("q1", "vacation days for new hires"), ("q2", "how to book travel"), ("q3", "reset my password")]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in corpus)
    )
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\nq3\td3\t1\n")
    return folder


def _session(tmp_path: Path) -> list[dict[str, object]]:
    """Run the session (``local`` mode, then ``auto``); the log of every connect and name lookup it made."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "session.py").write_text(SESSION)
    home, docs = tmp_path / "home", tmp_path / "docs"
    home.mkdir()
    (home / "config.toml").write_text('[routing]\nmode = "local"\ntimeout_s = 3\n')
    docs.mkdir()
    (docs / "leave.md").write_text("# Leave\n\nNew hires get twenty vacation days. Unused days carry over.\n")
    log = tmp_path / "egress.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")]),
        "EGRESS_LOG": str(log),
        "OUTPOST_HOME": str(home),
        "OUTPOST_LLM_MODEL": "smollm2",
        "OUTPOST_MAX_TOKENS": "8",
        "OUTPOST_N_CTX": "1024",
        "HF_HUB_OFFLINE": "1",
    }
    args = [str(home), str(docs), str(_beir(tmp_path / "beir")), str(free_port()), str(log)]
    done = subprocess.run(
        [sys.executable, str(tmp_path / "session.py"), *args], env=env, capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0 and "SESSION DONE" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def _hosts(entries: list[dict[str, object]]) -> set[str]:
    """Network hosts contacted or looked up (UNIX-socket paths are local files, not the network)."""
    hosts = set()
    for e in entries:
        address = e["address"]
        if isinstance(address, list):
            hosts.add(str(address[0]))
    return hosts


def test_a_laptop_session_connects_only_to_loopback_and_the_configured_remote(tmp_path: Path) -> None:
    entries = _session(tmp_path)
    split = next(i for i, e in enumerate(entries) if e["event"] == "phase")
    local, auto = entries[:split], entries[split + 1 :]
    assert any(e["event"] == "connect" for e in local)  # the hook works: the API calls were seen
    assert _hosts(local) <= LOOPBACK, _hosts(local) - LOOPBACK  # local mode: loopback only, remote configured
    assert REMOTE_HOST in _hosts(auto)  # auto + ask --remote on a public collection tried the remote ...
    assert _hosts(auto) <= LOOPBACK | {REMOTE_HOST}  # ... and nothing else left loopback
    routes = [(e.route, e.remote) for e in AuditLog(tmp_path / "home").entries()]
    assert routes[-1] == ("fallback", "far")  # it could not get there, and answered locally, on record
    assert ("fallback", "far") not in routes[:-1]  # in local mode it never tried
