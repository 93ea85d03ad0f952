"""ONNX Runtime backend: the torch-free embedder for laptops and small CPU hubs.

It loads ``onnxruntime`` and ``tokenizers`` only — never torch — so a laptop that only answers starts in a
fraction of a second and stays small. The graph is exported and checked once by ``outpost.embed.onnx_export``;
this module only runs it. The fp32 graph passed the probe check against sentence-transformers (cosine ≥ 0.999
on every probe), so it carries the model's own :class:`EmbeddingIdentity`: a collection built on a GPU hub with
torch is searched here, and one built here is searched there. The int8 graph is its own identity.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.base import Embedder
from outpost.embed.local_model import LocalModel
from outpost.embed.tokens import WordPieces
from outpost.records import EmbeddingIdentity

__all__ = ["POSITIONS_PER_CALL", "OnnxEmbedder", "position_batches", "run_graph"]

POSITIONS_PER_CALL = 256
"""Padded positions (texts × longest) per ``session.run``: a chunk of ~200 word pieces runs alone, short texts
(queries, headings) share a call. On a CPU one long text at a time is the fastest (its activations, 200 × 1,536
floats in the feed-forward layer and 12 × 200² attention scores, stay in a core's L2 cache; a batch of 16 streams
through memory): measured on 2 cores against batches of 2, 4, 8 and 16, interleaved with sentence-transformers
(docs/benchmarks.md, "Embedding"). Batching the short ones keeps the per-call overhead off them."""


def _session(graph: Path, threads: int) -> Any:
    """One session per embedder: ``threads`` for the operators, one inter-op thread, operators run in order.

    A BERT encoder is a chain (each op needs the previous one's output), so a parallel executor has nothing to
    overlap and only adds a second pool; the intra-op pool gets the real cores (hyper-threads share a core's
    vector units, and on a loaded machine extra threads only wait on each other at every barrier).
    """
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
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
        positions: int = POSITIONS_PER_CALL,
    ) -> None:
        self.model = model
        self.graph = graph
        self._identity = identity
        self.batch_size = batch_size
        self.threads = threads or _default_threads()
        self.positions = positions

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

    def _encode_all(self, texts: Sequence[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Length-sorted calls of at most ``positions`` padded positions and ``batch_size`` texts."""
        limit = self.model.max_seq_length - 2
        lengths = [min(n, limit) + 2 for n in self.count_tokens(list(texts))]  # what the model reads
        for index in position_batches(lengths, self.positions, self.batch_size):
            yield index, self._encode([texts[i] for i in index])

    def _encode(self, texts: list[str]) -> np.ndarray:
        batch = self.pieces.encode(texts)
        feeds = {
            "input_ids": batch.input_ids,
            "attention_mask": batch.attention_mask,
            "token_type_ids": batch.token_type_ids,
        }
        return np.asarray(self.session.run(None, {name: feeds[name] for name in self._input_names})[0])


def position_batches(lengths: Sequence[int], positions: int, most: int) -> Iterator[np.ndarray]:
    """Index arrays of the texts, longest first (ties in input order, as ``base.length_batches``), each as many
    texts as fit ``positions`` once padded to the batch's longest — at least one, at most ``most``."""
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)  # sorted: the first text of a batch is its longest
        count = max(1, min(most, positions // longest))
        yield order[start : start + count]
        start += count


def run_graph(graph: Path, model: LocalModel, texts: list[str], batched: bool) -> np.ndarray:
    """Vectors of ``texts`` from a graph not yet in the cache (the export's probe check): all in one padded batch
    (``batched``: the longest text pads every other, the hardest case for masking) or one at a time (no padding)."""
    identity = EmbeddingIdentity(model.name, "unchecked", 0, model.max_seq_length)
    embedder = OnnxEmbedder(model, graph, identity, batch_size=len(texts))
    return embedder._encode(texts) if batched else np.concatenate([embedder._encode([t]) for t in texts])


def _default_threads() -> int:
    """Physical cores this process may use (ONNX Runtime's default counts the machine's logical CPUs, ignoring
    affinity masks and cgroup quotas): ``outpost.cpus``, the one answer for thread counts."""
    from outpost.cpus import physical_cores

    return physical_cores()
