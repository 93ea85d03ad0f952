"""The real `outpost` entry point in a subprocess, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

OUTPOST = [sys.executable, "-m", "outpost"]


def run(*args: str, home: Path, check: bool = False, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OUTPOST_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([*prefix, *OUTPOST, *args], env=env, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def docs(tmp_path: Path, sample_dir: Path) -> Path:
    root = tmp_path / "docs"
    shutil.copytree(sample_dir, root)
    return root


def test_help_explains_every_command_and_option(home: Path) -> None:
    top = run("--help", home=home, check=True).stdout
    for command in ("quickstart", "ingest", "ask", "search", "collections"):
        assert command in top
    ask = run("ask", "--help", home=home, check=True).stdout
    for option in ("--collection", "--top-k", "--mode", "--model", "--temperature", "--max-tokens", "--ctx", "--json"):
        assert option in ask


def test_ingest_reports_broken_files_on_stderr_and_exits_nonzero(docs: Path, home: Path) -> None:
    (docs / "scan.pdf").write_bytes(b"%PDF-1.4 truncated")
    proc = run("ingest", str(docs), "--collection", "hb", "--quiet", home=home)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if "scan.pdf" in line]
    assert len(lines) == 1 and "cannot read pdf" in lines[0]
    assert "6 added" in proc.stderr

    listing = json.loads(run("collections", "--json", home=home, check=True).stdout)
    assert [(c["name"], c["documents"], c["version"]) for c in listing] == [("hb", 6, 1)]
    assert listing[0]["embedding"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert listing[0]["bytes_on_disk"] > 0 and listing[0]["chunks"] > 6

    table = run("collections", home=home, check=True).stdout
    assert "hb" in table and "all-Mi" in table


def test_search_json_schema(docs: Path, home: Path) -> None:
    run("ingest", str(docs), "-c", "hb", "-q", home=home, check=True)
    proc = run("search", "per diem for meals", "-c", "hb", "-k", "3", "--json", home=home, check=True)
    doc = json.loads(proc.stdout)
    assert doc["query"] == "per diem for meals" and doc["mode"] == "hybrid" and len(doc["results"]) == 3
    first = doc["results"][0]
    assert set(first) == {"document", "page", "heading", "chunk_id", "score", "bm25_rank", "dense_rank", "text"}
    assert first["document"] == "expense-policy.html" and "45 EUR" in first["text"]
    pdf = json.loads(run("search", "pension contribution", "-c", "hb", "-k", "1", "--json", home=home).stdout)
    assert pdf["results"][0]["document"] == "benefits-overview.pdf" and pdf["results"][0]["page"] == 2


@pytest.mark.slow
def test_ask_json_schema(docs: Path, home: Path) -> None:
    run("ingest", str(docs), "-c", "hb", "-q", home=home, check=True)
    proc = run(
        "ask",
        "How many vacation days do new hires get?",
        "-c",
        "hb",
        "--json",
        "--seed",
        "0",
        "--max-tokens",
        "48",
        home=home,
        check=True,
    )
    doc = json.loads(proc.stdout)
    assert set(doc) == {
        *("question", "answer", "model", "collection", "cited", "id", "sources"),
        *("generated", "grounding", "claims", "evidence", "notice", "grounding_ms", "confidence"),
        *("route", "route_reason"),
    }
    assert doc["route"] == "local"  # the default policy never sends a question away
    assert doc["answer"] and doc["model"] == "gemma3-270m" and doc["collection"] == "hb"
    assert doc["grounding"] in ("supported", "partial", "unsupported") and doc["claims"][0]["reason"]
    assert 0 < doc["confidence"] <= 1  # the local model's own, which the check reads
    source = doc["sources"][0]
    assert set(source) == {"number", "document", "page", "heading", "chunk_id", "score", "text", "evidence"}
    assert source["number"] == 1 and source["document"] == "employee-handbook.md"


def test_errors_are_one_line_on_stderr_with_a_specific_exit_code(home: Path, tmp_path: Path) -> None:
    proc = run("search", "anything", "-c", "nope", home=home)
    assert proc.returncode == 3 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "No collection named 'nope'" in proc.stderr
    bad = run("ingest", str(tmp_path / "missing"), "-c", "x", home=home)
    assert bad.returncode == 2 and "No such file or directory" in bad.stderr
    name = run("ingest", str(tmp_path), "-c", "../escape", home=home)
    assert name.returncode == 2 and "Invalid collection name" in name.stderr


@pytest.mark.slow
def test_quickstart_runs_with_no_network_at_all(home: Path) -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-n", "true"]).returncode != 0:
        pytest.skip("unshare -n is not permitted here; quickstart's offline run cannot be isolated")
    proc = run("quickstart", home=home, prefix=("unshare", "-n"))
    assert proc.returncode == 0, proc.stderr
    assert "Q: How many vacation days do new hires get?" in proc.stdout
    answer = proc.stdout.split("A: ", 1)[1].split("Sources:", 1)[0]
    assert answer.strip()
    assert "[1] employee-handbook.md" in proc.stdout
    made = {"collections", "feedback.sqlite", "audit.sqlite", "models"}  # audit.sqlite: routing decisions
    assert {p.name.split("-")[0] for p in home.iterdir()} <= made
