"""ONNX Runtime backend: the torch-free embedder for laptops and small CPU hubs.

It loads ``onnxruntime`` and ``tokenizers`` only — never torch — so a laptop that only answers starts in a
fraction of a second and stays small. The graph is exported and checked once by ``outpost.embed.onnx_export``;
this module only runs it. The fp32 graph passed the probe check against sentence-transformers (cosine ≥ 0.999
on every probe), so it carries the model's own :class:`EmbeddingIdentity`: a collection built on a GPU hub with
torch is searched here, and one built here is searched there. The int8 graph is its own identity.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.base import Embedder
from outpost.embed.local_model import LocalModel
from outpost.embed.tokens import WordPieces
from outpost.records import EmbeddingIdentity

__all__ = ["OnnxEmbedder", "run_graph"]


def _session(graph: Path, threads: int | None) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Idle pool threads sleep instead of spinning: on a laptop (or 2 cores shared by many) spinning threads steal
    # the cores the next batch needs; measured at load ~15 on 2 cores, query p50 150 ms spinning, 82 ms not.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are noise to a user
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


class OnnxEmbedder(Embedder):
    """Runs an exported mean-pooling graph on ONNX Runtime's CPU provider."""

    def __init__(
        self,
        model: LocalModel,
        graph: Path,
        identity: EmbeddingIdentity,
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        self.model = model
        self.graph = graph
        self._identity = identity
        self.batch_size = batch_size
        self.threads = threads or _default_threads()

    @property
    def identity(self) -> EmbeddingIdentity:
        return self._identity

    @cached_property
    def pieces(self) -> WordPieces:
        return WordPieces(self.model.tokenizer_file, self.model.max_seq_length)

    @cached_property
    def session(self) -> Any:
        return _session(self.graph, self.threads)

    @cached_property
    def _input_names(self) -> list[str]:
        return [i.name for i in self.session.get_inputs()]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return self.pieces.count(texts)

    def _encode(self, texts: list[str]) -> np.ndarray:
        batch = self.pieces.encode(texts)
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return np.asarray(self.session.run(None, {name: feeds[name] for name in self._input_names})[0])


def run_graph(graph: Path, model: LocalModel, texts: list[str], batched: bool) -> np.ndarray:
    """Vectors of ``texts`` from a graph not yet in the cache (the export's probe check): all in one padded batch
    (``batched``: the longest text pads every other, the hardest case for masking) or one at a time (no padding)."""
    identity = EmbeddingIdentity(model.name, "unchecked", 0, model.max_seq_length)
    embedder = OnnxEmbedder(model, graph, identity, batch_size=len(texts))
    return embedder._encode(texts) if batched else np.concatenate([embedder._encode([t]) for t in texts])


def _default_threads() -> int:
    """Cores this process may use (ONNX Runtime's default counts the machine's, ignoring affinity masks)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1
