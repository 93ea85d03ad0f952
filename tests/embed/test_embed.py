"""Embedding: length-bucketed batches in the base, the word-piece helper, backend choice, and the fast torch path
(the hub's GPU code) run on the CPU against sentence-transformers, the reference path.

The real bundled MiniLM throughout, except one deterministic embedder used to observe how ``Embedder.embed`` cuts
batches (logic that does not depend on the model).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from outpost.embed.base import Embedder, length_batches
from outpost.embed.gpu import TorchFastEmbedder
from outpost.embed.local_model import LocalModel
from outpost.embed.onnx import position_batches
from outpost.embed.probe import PROBE_TEXTS, cosines
from outpost.embed.select import Backend, CpuEmbedder, choose_embedder, cuda_present
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.embed.tokens import WordPieces
from outpost.records import EmbeddingIdentity

NFCORPUS = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nfcorpus" / "corpus.jsonl"


def nfcorpus_texts(n: int) -> list[str]:
    """The first ``n`` NFCorpus abstracts (title + text): real lengths, many past MiniLM's 256 word pieces."""
    with NFCORPUS.open(encoding="utf-8") as fh:
        rows = [json.loads(line) for line, _ in zip(fh, range(n))]
    return [f"{r['title']}\n\n{r['text']}" for r in rows]


class RecordingEmbedder(Embedder):
    """Deterministic vectors from the text (length and first character), recording each batch it is given."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.batches: list[list[str]] = []

    @property
    def identity(self) -> EmbeddingIdentity:
        return EmbeddingIdentity("recording", "0" * 64, 3, 16)

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t) for t in texts]  # its "word pieces" are characters

    def _encode(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return np.array([[len(t) + 1.0, ord(t[0]) if t else 0.0, 1.0] for t in texts], dtype=np.float32)


def test_length_batches_cover_every_text_once_longest_first() -> None:
    texts = ["a" * n for n in (3, 10, 1, 10, 7, 0, 5)]
    batches = list(length_batches(texts, 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    order = np.concatenate(batches).tolist()
    assert sorted(order) == list(range(len(texts)))
    assert order[:2] == [1, 3]  # equal lengths keep input order: runs are deterministic
    assert [len(texts[i]) for i in order] == sorted(map(len, texts), reverse=True)
    by_pieces = np.concatenate(list(length_batches(texts, 3, lengths=[1, 1, 9, 1, 1, 1, 5]))).tolist()
    assert by_pieces[:2] == [2, 6]  # given word pieces, those order the batches, not characters


def test_position_batches_run_long_texts_alone_and_group_short_ones() -> None:
    """The ONNX backend's calls: longest first, each within the padded-position budget, capped in texts."""
    lengths = [30, 200, 12, 130, 200, 60, 12, 12, 140]
    batches = [list(b) for b in position_batches(lengths, 256, 4)]
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))  # every text once
    assert batches[:4] == [[1], [4], [8], [3]]  # over 128 positions: alone, longest first, ties in input order
    assert batches[4:] == [[5, 0, 2, 6], [7]]  # 4 × 60 ≤ 256 (the cap of 4 texts), then what is left
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 256
    assert [list(b) for b in position_batches([900], 256, 4)] == [[0]]  # longer than the budget: still embedded
    assert list(position_batches([], 256, 4)) == []


def test_embed_sorts_batches_by_length_and_returns_input_order() -> None:
    rng = np.random.default_rng(7)
    texts = ["x" * int(n) + chr(97 + i % 26) for i, n in enumerate(rng.integers(0, 300, size=203))]
    embedder = RecordingEmbedder(batch_size=16)
    seen: list[int] = []
    vectors = embedder.embed(texts, progress=seen.append)
    expected = np.array([[len(t) + 1.0, ord(t[0]), 1.0] for t in texts])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(vectors, expected, atol=1e-6)  # each row is its own text's vector
    assert sum(seen) == len(texts) and len(seen) == len(embedder.batches) == 13
    spans = [(min(map(len, b)), max(map(len, b))) for b in embedder.batches]
    assert all(prev[0] >= nxt[1] for prev, nxt in zip(spans, spans[1:]))  # batches never interleave lengths
    assert embedder.embed([]).shape == (0, 3)


def test_word_pieces_truncate_like_the_model_and_count_like_the_chunker(embedder: SentenceTransformerEmbedder) -> None:
    model = LocalModel.find("all-MiniLM-L6-v2")
    assert model is not None
    pieces = WordPieces(model.tokenizer_file, model.max_seq_length)
    texts = list(PROBE_TEXTS)
    assert pieces.count(texts) == embedder.count_tokens(texts)
    batch = pieces.encode(texts)
    assert batch.input_ids.shape == (len(texts), 256)  # the longest probe is truncated at max_seq_length
    assert batch.attention_mask.sum(axis=1).tolist() == [min(n + 2, 256) for n in pieces.count(texts)]


def test_sentence_transformers_vectors_come_back_in_input_order(embedder: SentenceTransformerEmbedder) -> None:
    texts = nfcorpus_texts(12) + ["vitamin d", "Is coffee bad for your heart?"]
    together = embedder.embed(texts)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    assert cosines(together, alone).min() > 0.9999


def test_fast_torch_path_on_cpu_equals_the_reference_per_chunk(embedder: SentenceTransformerEmbedder) -> None:
    """The hub's GPU code (thread-pool tokenising, length buckets, one-batch-late fetch) run in fp32 on the CPU."""
    model = LocalModel.find("all-MiniLM-L6-v2")
    assert model is not None
    fast = TorchFastEmbedder(model, device="cpu", batch_size=8, tokenizer_threads=2, prefetch=2)
    texts = nfcorpus_texts(40) + list(PROBE_TEXTS)
    vectors = fast.embed(texts)
    reference = embedder.embed(texts)
    assert cosines(vectors, reference).min() >= 0.999
    assert fast.identity == embedder.identity  # same weights, same vectors: the same identity
    assert fast.count_tokens(texts[:5]) == embedder.count_tokens(texts[:5])


def test_backend_choice_without_loading_a_model(tmp_path: Path) -> None:
    assert not cuda_present("cpu") and cuda_present("cuda:0")
    cache = tmp_path / "onnx"
    forced = choose_embedder("all-MiniLM-L6-v2", "torch", "cpu", 64, cache)
    assert isinstance(forced, SentenceTransformerEmbedder)
    # A CLS-pooling model is outside what the fast backends compute: it stays on sentence-transformers.
    bundled = LocalModel.find("all-MiniLM-L6-v2")
    assert bundled is not None
    folder = tmp_path / "cls-model"
    shutil.copytree(bundled.folder, folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(bundled.folder / "model.safetensors")
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.write_text(json.dumps(config))
    backends: tuple[Backend, ...] = ("auto", "onnx", "gpu")
    for backend in backends:
        assert isinstance(choose_embedder(str(folder), backend, "cpu", 64, cache), SentenceTransformerEmbedder)
    assert not cache.joinpath("exports").exists()  # nothing was exported for it


def test_cpu_choice_knows_identity_and_word_pieces_before_any_export(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """Checking a collection's identity and chunking an unchanged tree must not export or load a model."""
    cache = tmp_path / "onnx"
    chosen = choose_embedder("all-MiniLM-L6-v2", "auto", "cpu", 32, cache)
    assert isinstance(chosen, CpuEmbedder) and chosen.batch_size == 32
    assert chosen.identity == embedder.identity
    assert chosen.count_tokens(list(PROBE_TEXTS)) == embedder.count_tokens(list(PROBE_TEXTS))
    assert "backend" not in chosen.__dict__ and not (cache / "exports").exists()


@pytest.mark.parametrize("device", ["cpu"])
def test_gpu_backend_forced_runs_on_the_cpu_when_no_cuda(device: str, tmp_path: Path) -> None:
    chosen = choose_embedder("all-MiniLM-L6-v2", "gpu", device, 64, tmp_path / "onnx")
    assert isinstance(chosen, TorchFastEmbedder) and chosen.device == "cpu" and chosen.batch_size == 64
