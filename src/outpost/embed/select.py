"""Which backend embeds: sentence-transformers, the fast torch path, or ONNX Runtime (``embed_backend``).

``auto`` (the default) picks per machine:
- an NVIDIA device (``device`` cuda, or none given and a driver present) → :class:`TorchFastEmbedder` in fp16;
- otherwise :class:`CpuEmbedder`: ONNX Runtime with the fp32 graph, exported and probe-checked at the first
  embedding (``outpost.embed.onnx_export``), so a laptop never imports torch after that first time; or
  sentence-transformers when the export is missing a piece or failed its check (said in a warning, with the
  measured cosine);
- sentence-transformers when the model is not a plain mean-pooling one.

``onnx-int8`` is never chosen automatically: its vectors differ (a different identity), so a collection built
with it cannot be searched by a hub's torch path or another laptop's fp32 graph. ``torch`` forces
sentence-transformers; ``gpu`` forces the fast torch path (also on the CPU, in fp32).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np

from outpost.embed.base import Embedder, ProgressCallback
from outpost.embed.local_model import LocalModel
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.embed.tokens import WordPieces
from outpost.records import EmbeddingIdentity

__all__ = ["Backend", "CpuEmbedder", "choose_embedder", "cuda_present"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "gpu", "onnx", "onnx-int8"]

ONNX_BATCH_SIZE = 16
"""The exported graph materialises attention scores (batch × 12 heads × 256²): at 64 texts a batch the ingest
process peaked at 665 MB, at 16 it stays under 600 MB, and ONNX Runtime on a CPU is no slower for it (measured,
interleaved: 20.9 s at 16 against 23.6 s at 64 for the same 322 chunks; docs/benchmarks.md)."""


def cuda_present(device: str | None) -> bool:
    """Whether embedding should run on CUDA, without importing torch when no NVIDIA driver is installed."""
    if device is not None:
        return device.startswith("cuda")
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
        return False
    import torch

    return bool(torch.cuda.is_available())


def choose_embedder(
    name: str,
    backend: Backend,
    device: str | None,
    batch_size: int,
    cache: Path,
    st_cache_dir: Path | None = None,
) -> Embedder:
    """The embedder for ``name`` on this machine (see the module doc for the rules)."""
    memo = cache / "weights-sha256.json"
    model = LocalModel.find(name)
    fast_ok = model is not None and model.plain_mean_pooling()
    if backend == "torch" or model is None or not fast_ok:
        if backend not in ("torch", "auto"):
            log.warning("embed backend %s needs a local mean-pooling model; using sentence-transformers", backend)
        return SentenceTransformerEmbedder(name, device, batch_size, st_cache_dir, hash_memo=memo)
    if backend == "gpu" or (backend == "auto" and cuda_present(device)):
        from outpost.embed.gpu import TorchFastEmbedder

        return TorchFastEmbedder(model, device or ("cuda" if cuda_present(None) else "cpu"), hash_memo=memo)
    fallback = SentenceTransformerEmbedder(name, device, batch_size, st_cache_dir, hash_memo=memo)
    if backend == "onnx-int8":  # its identity is its graph's hash: known only once exported
        return _onnx(model, "int8", batch_size, cache, memo) or fallback
    return CpuEmbedder(model, batch_size, cache, memo, fallback)


class CpuEmbedder(Embedder):
    """The fp32 ONNX graph when it passes its check, else sentence-transformers — decided at the first embedding.

    Both carry the model's own identity and tokenizer, so the identity check, chunking and a re-ingest of an
    unchanged tree happen before (and usually without) any export or model load, as with sentence-transformers.
    """

    def __init__(
        self, model: LocalModel, batch_size: int, cache: Path, memo: Path, fallback: SentenceTransformerEmbedder
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.cache = cache
        self.memo = memo
        self.fallback = fallback

    @cached_property
    def identity(self) -> EmbeddingIdentity:
        return self.model.identity(self.memo)

    @cached_property
    def pieces(self) -> WordPieces:
        return WordPieces(self.model.tokenizer_file, self.model.max_seq_length)

    @cached_property
    def backend(self) -> Embedder:
        """What actually runs (exports the graph on first use; see ``outpost.embed.onnx_export``)."""
        return _onnx(self.model, "fp32", self.batch_size, self.cache, self.memo) or self.fallback

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.pieces.count(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.backend._encode(texts)

    def embed(self, texts: Sequence[str], progress: ProgressCallback | None = None) -> np.ndarray:
        return self.backend.embed(texts, progress)


def _onnx(
    model: LocalModel, variant: Literal["fp32", "int8"], batch_size: int, cache: Path, memo: Path
) -> Embedder | None:
    """The ONNX embedder when its graph exists or exports and passes the probe check; else ``None`` and a warning."""
    try:
        from outpost.embed.onnx import OnnxEmbedder
        from outpost.embed.onnx_export import ensure_export

        reference = model.identity(memo)
        export = ensure_export(model, reference.weights_sha256, cache, variant)
    except Exception as exc:  # any failure to export leaves the reference path, which still works
        log.warning("ONNX embedding unavailable (%s: %s); using sentence-transformers", type(exc).__name__, exc)
        return None
    if not export.accepted:
        log.warning(
            "ONNX %s graph of %s differs from sentence-transformers (probe cosine %.4f < %.3f); using "
            "sentence-transformers",
            variant,
            model.name,
            export.min_cosine,
            export.threshold,
        )
        return None
    identity = reference if variant == "fp32" else _int8_identity(reference, export.graph_sha256)
    return OnnxEmbedder(model, export.graph_path(cache), identity, min(batch_size, ONNX_BATCH_SIZE))


def _int8_identity(reference: EmbeddingIdentity, graph_sha256: str) -> EmbeddingIdentity:
    """A quantised graph is another model as far as stored vectors go: its own name and weights hash."""
    return EmbeddingIdentity(
        name=f"{reference.name}+onnx-int8",
        weights_sha256=graph_sha256,
        dimension=reference.dimension,
        max_seq_length=reference.max_seq_length,
        normalized=reference.normalized,
    )
