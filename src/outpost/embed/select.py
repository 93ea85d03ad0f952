"""Which backend embeds: sentence-transformers, the fast torch path, or ONNX Runtime (``embed_backend``).

``auto`` (the default) picks per machine:
- an NVIDIA device (``device`` cuda, or none given and a driver present) → :class:`TorchFastEmbedder` in fp16;
- otherwise :class:`CpuEmbedder`: ONNX Runtime with the fp32 graph, exported and probe-checked at the first
  embedding (``outpost.embed.onnx_export``), so a laptop never imports torch after that first time; or
  sentence-transformers when the export is missing a piece or failed its check (said in a warning, with the
  measured cosine). The graphs tried are :data:`CPU_GRAPHS`, in order, each failure a warning and a step down;
- sentence-transformers when the model is not a plain mean-pooling one.

``onnx-int8`` is never chosen automatically: its vectors differ (a different identity), so a collection built
with it cannot be searched by a hub's torch path or another laptop's fp32 graph; they even depend on which texts
share a call (dynamic quantisation scales activations by the whole batch: cosine 0.988–0.995 between a query
embedded alone and in a batch); and on the whole NFCorpus it lost 0.61% dense nDCG@10 (docs/benchmarks.md).
``torch`` forces sentence-transformers; ``gpu`` forces the fast torch path (also on the CPU, in fp32).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from outpost.embed.base import Embedder, ProgressCallback
from outpost.embed.local_model import LocalModel
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.embed.tokens import WordPieces
from outpost.records import EmbeddingIdentity

if TYPE_CHECKING:
    from outpost.embed.onnx_export import Variant

__all__ = ["Backend", "CpuEmbedder", "choose_embedder", "cuda_present"]

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "gpu", "onnx", "onnx-int8"]

ONNX_BATCH_SIZE = 16
"""The most texts per ONNX Runtime call; how many a call really takes is set by padded positions
(``outpost.embed.onnx.POSITIONS_PER_CALL``: a 200-piece chunk runs alone, short texts share a call). Large batches
are slower on a CPU and the graph materialises attention scores (batch × 12 heads × n²): at 64 texts a batch the
ingest peaked at 665 MB (docs/benchmarks.md, "Embedding")."""

CPU_GRAPHS: tuple[Variant, ...] = ("fp32",)
"""The fp32 graphs ``auto`` tries on a CPU, in order (each keeps the model's identity only once it passed the probe
check). The transformer optimiser's fused graph (``fp32-opt``) measured no faster than the plain graph, at one text
per call as at 2–16 (docs/benchmarks.md, "Embedding"), so it is not tried: one export and one 90 MB file fewer.
Putting it first here makes ``auto`` run it, the plain graph being the step down."""


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
        """What actually runs (exports the graphs on first use; see ``outpost.embed.onnx_export``)."""
        steps_down = [f"the ONNX {v} graph" for v in CPU_GRAPHS[1:]] + ["sentence-transformers"]
        for variant, instead in zip(CPU_GRAPHS, steps_down):
            found = _onnx(self.model, variant, self.batch_size, self.cache, self.memo, instead)
            if found is not None:
                return found
        return self.fallback

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.pieces.count(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.backend._encode(texts)

    def embed(self, texts: Sequence[str], progress: ProgressCallback | None = None) -> np.ndarray:
        return self.backend.embed(texts, progress)


def _onnx(
    model: LocalModel,
    variant: Variant,
    batch_size: int,
    cache: Path,
    memo: Path,
    instead: str = "sentence-transformers",
) -> Embedder | None:
    """The ONNX embedder when its graph exists or exports and passes the probe check; else ``None`` and a warning
    naming what runs ``instead``."""
    try:
        from outpost.embed.onnx import OnnxEmbedder
        from outpost.embed.onnx_export import ensure_export

        reference = model.identity(memo)
        export = ensure_export(model, reference.weights_sha256, cache, variant)
    except Exception as exc:  # any failure to export leaves the next path down, which still works
        log.warning("ONNX %s embedding unavailable (%s: %s); using %s", variant, type(exc).__name__, exc, instead)
        return None
    if not export.accepted:
        log.warning(
            "ONNX %s graph of %s differs from sentence-transformers (probe cosine %.4f < %.3f); using %s",
            export.variant,
            model.name,
            export.min_cosine,
            export.threshold,
            instead,
        )
        return None
    identity = reference if variant != "int8" else _int8_identity(reference, export.graph_sha256)
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
