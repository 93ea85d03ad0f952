"""Everything under OUTPOST_HOME is private: folders 0700, files 0600 (document text and every question live there).

Two paths are checked, each with a permissive umask (022) in the parent, as a default shell has:
- the Python API and an in-process `outpost serve`: ingest, search, ask, a vote over HTTP, a derived model,
  a copied blob, a saved hub and a hub home, walked while the server still holds its SQLite files open
  (so the ``-wal``/``-shm`` files are there too). This proves the explicit modes in ``outpost.home``.
- the real `outpost` CLI in a subprocess (ingest), which also sets umask 077 for whatever a library
  writes for it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hubkit import ServerThread, outpost_cli
from outpost import Outpost
from outpost.api import create_app
from outpost.home import ensure_private_dir, open_private, private_file
from outpost.hub.home import HubHome
from outpost.hubs import HubConfig, save_hub
from outpost.models.registry import Registry
from outpost.settings import Settings


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    yield
    os.umask(old)


def exposed(home: Path) -> list[str]:
    """Every path under ``home`` (``home`` included) that group or others can read, write or enter."""
    paths = [home, *home.rglob("*")]
    return [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p}" for p in paths if p.lstat().st_mode & 0o077]


def test_helpers_create_private_and_tighten_what_they_find(tmp_path: Path, umask_022: None) -> None:
    parent = tmp_path / "shared"
    parent.mkdir(mode=0o755)
    made = ensure_private_dir(parent / "home" / "a" / "b")
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in (made, made.parent, made.parent.parent))
    assert stat.S_IMODE(parent.stat().st_mode) == 0o755  # a folder it did not create is not its business
    loose = parent / "loose"
    loose.mkdir(mode=0o755)
    ensure_private_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700  # an older Outpost's folder is tightened
    old_db = made / "old.sqlite"
    old_db.write_bytes(b"keep me")
    old_db.chmod(0o644)
    private_file(old_db)
    assert stat.S_IMODE(old_db.stat().st_mode) == 0o600 and old_db.read_bytes() == b"keep me"
    assert stat.S_IMODE(private_file(made / "new.sqlite").stat().st_mode) == 0o600
    with open_private(made / "x.tmp", "w") as fh:
        fh.write("secret")
    assert stat.S_IMODE((made / "x.tmp").stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        open_private(made / "x.tmp", "r")


@pytest.mark.slow  # the real embedder and SmolLM2
def test_quickstart_like_use_leaves_nothing_readable_by_others(
    tmp_path: Path, sample_dir: Path, umask_022: None
) -> None:
    home = tmp_path / "home"
    op = Outpost(home=home, exact_search_below=0, n_ctx=1024)  # exact_search_below=0: an ANN index file too
    op.ingest(sample_dir, collection="docs")
    assert op.search("vacation days", "docs")
    answer = op.ask("How many vacation days?", "docs", max_tokens=8, seed=0)
    op.vote(answer, helpful=True)
    registry = Registry(home)
    registry.derive("brief", registry.get("smollm2"), 'FROM smollm2\nSYSTEM "Be brief."\n')
    small = tmp_path / "weights.bin"
    small.write_bytes(os.urandom(1024))
    registry.add_blob(small)
    save_hub(home, HubConfig(name="hq", url="http://hub.example:8765", token="t0ken"))
    HubHome.at(home).init()  # the signing key and hub.sqlite
    with ServerThread(create_app(Settings(home=home, n_ctx=1024))) as server:
        body = {"model": "rag:docs", "messages": [{"role": "user", "content": "Vacation days?"}], "max_tokens": 8}
        reply = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120).json()
        vote = httpx.post(f"{server.url}/v1/feedback", json={"answer_id": reply["answer_id"], "helpful": False})
        assert vote.status_code == 200
        names = {p.name for p in home.rglob("*")}
        assert {"store.sqlite-wal", "feedback.sqlite-wal", "signing-key.pem", "hq.json"} <= names
        assert any(n.startswith("index-") for n in names) and any(n.startswith("sha256-") for n in names)
        assert exposed(home) == []


@pytest.mark.slow  # a CLI subprocess loading torch and the embedder
def test_the_cli_keeps_the_home_private(tmp_path: Path, sample_dir: Path, umask_022: None) -> None:
    home = tmp_path / "cli-home"
    assert outpost_cli("ingest", str(sample_dir), "--collection", "docs", "-q", home=home).returncode == 0
    assert (home / "collections" / "docs" / "store.sqlite").is_file()
    assert exposed(home) == []
