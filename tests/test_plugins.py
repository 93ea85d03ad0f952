"""Plugins (``outpost/plugins.py``): real packages, built with pip, add a file format, an embedder and a chat runtime.

Two tiny plugin packages are written to ``tmp_path`` (a ``pyproject.toml`` and one module each) and installed for
real with ``pip install --target`` into a folder of their own, which goes on ``sys.path`` (in-process tests) or
``PYTHONPATH`` (the CLI in a subprocess). The shared venv is never changed, so other tests running at the same
time never see them. ``outpost-toy`` is a working plugin; ``outpost-broken`` fails on import and must cost the
user one warning, never the built-ins.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from hubkit import outpost_cli
from outpost.embed.factory import EMBEDDERS, load_embedder
from outpost.errors import ModelNotFoundError
from outpost.ingest.loaders import LOADERS, load_bytes, loaders
from outpost.models.load import RUNTIMES, load_chat_model, unload_all
from outpost.plugins import Group, factory_entries
from outpost.remotes import REMOTES
from outpost.settings import Settings

TOY_MODULE = '''
"""A toy Outpost plugin: ``.toy`` files, a hashing embedder, an echoing chat runtime."""
import hashlib
import re

import numpy as np

from outpost.embed.base import Embedder
from outpost.llm.base import ChatModel
from outpost.records import Block, EmbeddingIdentity


def extract(data, name):
    """``.toy``: a ``title:`` line, then one block per ``- `` line."""
    lines = data.decode("utf-8").splitlines()
    title = lines[0].removeprefix("title:").strip()
    return title, [Block(line[2:], None, (title,)) for line in lines[1:] if line.startswith("- ")]


class HashEmbedder(Embedder):
    """Words hashed into 64 buckets: no weights, so it loads in no time."""

    def __init__(self, model):
        self.model = model

    @property
    def identity(self):
        return EmbeddingIdentity("toy-" + self.model, "0" * 64, 64, 256)

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def _encode(self, texts):
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\\w+", text.lower()):
                out[row, hashlib.sha256(word.encode()).digest()[0] % 64] += 1.0
        return out + 1e-3


class EchoModel(ChatModel):
    """Answers with a fixed marker and the question: proves which runtime answered."""

    def __init__(self, model):
        self.name, self.n_ctx = "toy:" + model, 4096

    def prompt_tokens(self, messages):
        return sum(len(m["content"].split()) for m in messages)

    def stream(self, messages, params, extra_stop=None):
        yield "TOY-ECHO: "
        yield messages[-1]["content"][-40:]


def register_loaders(register):
    register("toy", [".toy"], extract)


def register_embedders(register):
    register("toy", lambda model, settings: HashEmbedder(model))


def register_llms(register):
    register("toy", lambda model, settings: EchoModel(model))
'''

TOY_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "outpost-toy"
version = "0.1.0"

[project.entry-points."outpost.loaders"]
toy = "outpost_toy:register_loaders"

[project.entry-points."outpost.embedders"]
toy = "outpost_toy:register_embedders"

[project.entry-points."outpost.llms"]
toy = "outpost_toy:register_llms"

[tool.setuptools]
py-modules = ["outpost_toy"]
"""

BROKEN_PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "outpost-broken"
version = "0.1.0"

[project.entry-points."outpost.loaders"]
broken = "outpost_broken:register_loaders"

[tool.setuptools]
py-modules = ["outpost_broken"]
"""

TOY_FILE = (
    "title: Lighthouse keeping\n- The lamp is lit at dusk by the keeper.\n- Fog horns sound every thirty seconds.\n"
)
GROUPS = (LOADERS, EMBEDDERS, RUNTIMES, REMOTES)


def _package(folder: Path, pyproject: str, module: str, source: str) -> Path:
    folder.mkdir()
    (folder / "pyproject.toml").write_text(textwrap.dedent(pyproject))
    (folder / f"{module}.py").write_text(source)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both plugin packages, installed by pip into a folder of their own (never into the shared venv)."""
    root = tmp_path_factory.mktemp("plugins")
    toy = _package(root / "toy", TOY_PYPROJECT, "outpost_toy", TOY_MODULE)
    broken = _package(root / "broken", BROKEN_PYPROJECT, "outpost_broken", "import outpost_no_such_module\n")
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = subprocess.run([*command, "--target", str(target), str(toy), str(broken)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture
def installed(site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The plugins visible to this process (on ``sys.path``); every registry re-reads its group, before and after."""
    monkeypatch.syspath_prepend(str(site))
    for group in GROUPS:
        group.reload()
    yield site
    monkeypatch.undo()
    unload_all()  # the toy chat model must not show up in later tests' loaded_models()
    for group in GROUPS:
        group.reload()


def test_the_built_ins_register_through_the_entry_points() -> None:
    built_in = [(LOADERS, "builtin"), (EMBEDDERS, "sentence-transformers"), (RUNTIMES, "llamacpp"), (REMOTES, "openai")]
    for group, name in built_in:
        eps = [ep for ep in entry_points(group=group.name) if ep.dist is not None and ep.dist.name == "outpost"]
        assert [ep.name for ep in eps] == [name]
    assert loaders()[".pdf"].kind == "pdf" and LOADERS.owner(".md") == "builtin"
    assert EMBEDDERS.owner("sentence-transformers") == "sentence-transformers"
    assert RUNTIMES.owner("llamacpp") == "llamacpp" and REMOTES.owner("openai") == "openai"


def test_a_plugin_adds_a_format_an_embedder_and_a_runtime(installed: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="outpost.plugins"):
        document = load_bytes(TOY_FILE.encode(), "notes/beacon.toy")
    assert document.kind == "toy" and document.title == "Lighthouse keeping"
    assert [b.text for b in document.blocks] == [
        "The lamp is lit at dusk by the keeper.",
        "Fog horns sound every thirty seconds.",
    ]
    assert LOADERS.owner(".toy") == "toy" and loaders()[".md"].kind == "markdown"  # the built-ins are all there
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "'broken'" in warnings[0] and "outpost-broken" in warnings[0]
    assert "ModuleNotFoundError" in warnings[0] and "outpost_no_such_module" in warnings[0]

    settings = Settings()
    embedder = load_embedder(settings, "toy:words")
    assert type(embedder).__name__ == "HashEmbedder" and embedder.identity.name == "toy-words"
    assert embedder.embed(["lamp at dusk"]).shape == (1, 64)
    chat = load_chat_model(settings, "toy:echo")
    assert chat.name == "toy:echo" and load_chat_model(settings, "toy:echo") is chat  # kept like a loaded GGUF


def test_an_unknown_kind_names_the_installed_ones() -> None:
    with pytest.raises(ModelNotFoundError, match=r"No embedder backend 'nope' .*installed: sentence-transformers"):
        load_embedder(Settings(), "nope:model")
    with pytest.raises(ModelNotFoundError, match=r"No chat runtime 'nope' .*installed: llamacpp"):
        load_chat_model(Settings(), "nope:model")


def test_a_registration_that_clashes_or_is_malformed_skips_only_that_plugin(caplog: pytest.LogCaptureFixture) -> None:
    """The checks on what ``register`` receives, through a group of its own (no entry points: only built-ins)."""

    def builtin(register):  # type: ignore[no-untyped-def]
        register("alpha", len)

    group: Group[object] = Group("outpost.test-no-such-group", "thing", factory_entries, builtin)
    assert group.table() == {"alpha": len} and group.owner("alpha") == "builtin"
    with caplog.at_level(logging.WARNING, logger="outpost.plugins"):
        group._merge(group._table or {}, "late", "late-package", group._collect(builtin))
        with pytest.raises(Exception, match="Invalid plugin kind"):
            group._collect(lambda register: register("has:colon", len))
        with pytest.raises(TypeError, match="must be a function"):
            group._collect(lambda register: register("beta", "not callable"))
    assert group.table() == {"alpha": len}  # the first registration of a key stays
    assert "'late' (package late-package) registers thing 'alpha', which 'builtin' registered first" in caplog.text


@pytest.mark.slow  # five CLI processes (~14 s)
def test_the_cli_ingests_searches_and_answers_through_the_plugin(
    installed: Path, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "beacon.toy").write_text(TOY_FILE)
    (docs / "readme.md").write_text("# Boats\n\nRowing boats are kept in the shed by the pier.\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(installed), os.environ.get("PYTHONPATH", "")]))
    ingested = outpost_cli("ingest", str(docs), "-c", "coast", "--embed-model", "toy:words", "-q", home=home)
    assert ingested.returncode == 0, ingested.stderr
    warnings = [line for line in ingested.stderr.splitlines() if "outpost-broken" in line]
    assert len(warnings) == 1 and "'broken'" in warnings[0]  # once, though the parse worker loads the group too

    found = outpost_cli("search", "fog horn", "-c", "coast", "--embed-model", "toy:words", "--json", home=home)
    hits = json.loads(found.stdout)["results"]
    assert hits[0]["document"] == "beacon.toy" and hits[0]["text"].endswith("Fog horns sound every thirty seconds.")
    assert {h["document"] for h in hits} == {"beacon.toy", "readme.md"}  # the built-in Markdown loader still ran

    question = ["ask", "When is the lamp lit?", "-c", "coast", "--embed-model", "toy:words", "--no-check", "--json"]
    asked = outpost_cli(*question, "--model", "toy:echo", home=home)
    answer = json.loads(asked.stdout)
    assert answer["generated"].startswith("TOY-ECHO: ") and answer["model"] == "toy:echo", asked.stderr

    (coast,) = json.loads(outpost_cli("collections", "--json", home=home).stdout)
    assert coast["embedding"]["name"] == "toy-words" and coast["documents"] == 2

    monkeypatch.setenv("PYTHONPATH", os.environ["PYTHONPATH"].split(os.pathsep, 1)[1])  # uninstalled
    gone = outpost_cli(*question, "--model", "toy:echo", home=home)
    assert gone.returncode == ModelNotFoundError.exit_code and "No chat runtime 'toy'" in gone.stderr
