"""The model registry and `outpost models`: pulls (file, hub, Hugging Face offline), create, show, rm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hubkit import HubServer, outpost_cli
from outpost.errors import IntegrityError, ModelNotFoundError
from outpost.hashing import sha256_file
from outpost.hub.home import HubHome
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name, save_hub
from outpost.llm.bundled import resolve_gguf
from outpost.models.pull import pull
from outpost.models.registry import Registry

SMOL = resolve_gguf("smollm2")


def test_bundled_models_are_registered_with_header_metadata(home: Path) -> None:
    entry = Registry(home).get("smollm2")
    assert entry.source == "bundled" and entry.path == str(SMOL) and entry.size == SMOL.stat().st_size
    meta = entry.metadata
    assert meta["architecture"] == "llama" and meta["quantization"] == "Q4_1" and meta["layers"] == 30
    assert meta["context_length"] == 8192 and 130e6 < meta["parameters"] < 140e6
    assert "<|im_start|>" in meta["chat_template"]
    assert not (home / "models" / "blobs").exists()  # bundled files are not copied


def test_pull_from_a_file_is_content_addressed_and_rm_frees_the_blob(home: Path, tmp_path: Path) -> None:
    registry = Registry(home)
    entry = registry.pull_file(SMOL, "tiny")
    blob = home / "models" / "blobs" / f"sha256-{entry.sha256}.gguf"
    assert Path(entry.path) == blob and sha256_file(blob) == sha256_file(SMOL)
    twin = registry.pull_file(SMOL, "tiny2")  # same bytes: same blob
    assert twin.path == entry.path and len(list((home / "models" / "blobs").iterdir())) == 1
    registry.remove("tiny")
    assert blob.is_file()  # still used by tiny2
    registry.remove("tiny2")
    assert not blob.exists()
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"definitely not a model")
    with pytest.raises(Exception, match="not a readable GGUF"):
        registry.pull_file(not_gguf)
    assert [e.name for e in registry.list()] == ["smollm2"]


@pytest.mark.slow
def test_a_half_copied_model_never_shows_up(home: Path) -> None:
    killed = outpost_cli("models", "pull", str(SMOL), "--name", "half", home=home, fault="models:copy")
    assert killed.returncode == -9
    listing = json.loads(outpost_cli("models", "list", "--json", home=home).stdout)
    assert [m["name"] for m in listing] == ["smollm2"]
    assert not list((home / "models" / "blobs").glob("sha256-*"))


def test_create_show_and_rm_through_the_cli(home: Path, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM smollm2\nPARAMETER temperature 0.2\nSYSTEM You answer support tickets politely.\n")
    created = outpost_cli("models", "create", "support", "-f", str(modelfile), home=home)
    assert created.returncode == 0, created.stderr
    shown = json.loads(outpost_cli("models", "show", "support", "--json", home=home).stdout)
    assert shown["base"] == "smollm2" and shown["source"] == "derived" and shown["path"] == str(SMOL)
    assert "SYSTEM You answer support tickets politely." in shown["modelfile"]
    table = outpost_cli("models", "list", home=home).stdout
    assert "support" in table and "derived" in table and "Q4_1" in table
    assert outpost_cli("models", "rm", "support", home=home).returncode == 0
    missing = outpost_cli("models", "show", "support", home=home)
    assert missing.returncode == 6 and "No model named 'support'" in missing.stderr
    modelfile.write_text('FROM smollm2\nTEMPLATE """{{ .Prompt }}"""\nPARAMETER mirostat 1\n')
    warned = outpost_cli("models", "create", "templated", "-f", str(modelfile), home=home)
    assert warned.returncode == 0, warned.stderr
    assert "warning: TEMPLATE is not used" in warned.stderr and "warning: PARAMETER mirostat" in warned.stderr


def test_pull_from_huggingface_offline_fails_clearly(home: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    with pytest.raises(ModelNotFoundError, match="needs the network"):
        pull(home, "hf://bartowski/Qwen2.5-0.5B-Instruct-GGUF/Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")


def test_pull_from_the_hub_is_scoped_and_verified(tmp_path: Path, home: Path) -> None:
    hub_home = tmp_path / "hub"
    key = HubHome.at(hub_home).init()
    Registry(HubHome.at(hub_home).root).pull_file(SMOL, "approved")
    tokens = Tokens(HubHome.at(hub_home))
    allowed = tokens.create("laptop", models=["approved"])[0]
    other = tokens.create("other", models=["something-else"])[0]
    with HubServer(hub_home) as server:
        save_hub(home, HubConfig(hub_name(server.url), server.url, allowed, key))
        entry = pull(home, "hub://approved")
        assert entry.source == "hub" and entry.sha256 == sha256_file(SMOL)
        assert Registry(home).get("approved").metadata["quantization"] == "Q4_1"

        save_hub(home, HubConfig(hub_name(server.url), server.url, other, key))
        with pytest.raises(Exception, match="approved"):
            pull(home, "hub://approved")  # out of scope: 404, like a model that does not exist

        save_hub(home, HubConfig(hub_name(server.url), server.url, allowed, key))
        blob = next((hub_home / "hub" / "models" / "blobs").glob("sha256-*.gguf"))
        data = bytearray(blob.read_bytes())
        data[-10] ^= 0xFF  # the hub's file no longer matches its signed manifest
        blob.write_bytes(bytes(data))
        Registry(home).remove("approved")
        with pytest.raises(IntegrityError, match="does not match its signed sha256"):
            pull(home, "hub://approved")
    assert "approved" not in [e.name for e in Registry(home).list()]
