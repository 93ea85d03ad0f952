"""Ingest's pure batch stages on Ray Data: read → parse → chunk → embed → quantise across a cluster.

The stages are the ones ``pipeline.py`` runs in process (``read_batch``, ``Chunker.chunk_batch``, the
embedder's ``embed`` then ``quantize``), handed to Ray Data ``map_batches``; what changed, what is reused and
the one ``Changeset`` stay with the single writer (``plan`` on the driver), so a Ray ingest publishes exactly
what a local one would: the same chunk ids and the same int8 bytes.

- **Read + parse** run as tasks, one parse worker (``open_parser``: time budget, memory cap) per batch of files.
  The paths are the driver's, so every node must see the ingest root at the same place (a shared filesystem),
  as with any Ray Data file source.
- **Chunk** and **embed** run in actors that load the embedder once (chunking needs its tokenizer). Embedding
  actors ask for a GPU each when the cluster has GPUs; otherwise they share the CPUs.
- **The collection's embedder**: chunk actors load the settings' model (chunk ids are the base model's), embedding
  actors the embedder the plan embeds with (``Stages.encode``'s): the settings' model, or, for a collection
  switched to a fine-tuned embedder (``hub/embedder.py``), its shipped encoder, which travels as its folder and
  sha256 (``encoder_origin``), never as a loaded model. That folder is under the hub home, so, like the ingest
  root, the hub home must be at the same path on every node (a shared filesystem); each actor verifies every
  file's hash before loading it, so a node with a missing or different copy refuses rather than embed otherwise.
- **Same vectors**: the driver cuts the texts into the embedder's own batches (``length_batches``: longest
  first, ``batch_size`` at a time, as ``Embedder.embed`` does locally) and an actor embeds each batch on its
  own, so every text is encoded beside the same neighbours (padding and BLAS blocking follow the batch) and
  the vectors match the local path bit for bit. A row carries several batches, to keep Ray's per-row cost
  small beside the model's. Bit for bit holds when the workers pick the backend the driver would
  (``embed_backend``, per machine): a GPU worker's fp16 vectors for a CPU driver keep the embedding identity
  (cosine >= 0.999, ``embed/select.py``) but not the exact bytes; set ``embed_backend`` to pin one.
- Rows carry pickled records: ``Document`` and ``Chunk`` are nested dataclasses that Arrow cannot type, and
  the bytes only ever travel between this driver and its own workers (Ray pickles tasks the same way).

``ray`` is imported only when a ``RayStages`` is opened, so nothing of Outpost needs it otherwise
(``pip install 'outpost[ray]'``).

    >>> with ray_stages("127.0.0.1:6379", settings, embedder, chunker) as stages:
    ...     hub.ingest(paths, "docs", embedder, chunker, stages=stages)
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.base import Embedder, length_batches
from outpost.embed.encoders import encoder_origin, load_encoder, verify_encoder
from outpost.embed.factory import load_embedder
from outpost.errors import ConfigError, LoadError, PackError
from outpost.ingest.chunker import Chunker
from outpost.ingest.discover import SourceFile
from outpost.ingest.isolation import open_parser
from outpost.ingest.limits import ReadLimits
from outpost.ingest.pipeline import Progress, read_batch
from outpost.records import Chunk, Document, EmbeddingIdentity
from outpost.settings import Settings

__all__ = ["RayStages", "ray_stages"]

log = logging.getLogger(__name__)

FILES_PER_TASK = 32  # one parse worker per batch of files: its start (~0.5 s) is paid once per batch
DOCS_PER_BATCH = 16
EMBED_BATCHES_PER_ROW = 8

Batch = dict[str, Any]  # a Ray Data batch in "numpy" format: column name → array


def _pack(item: object) -> bytes:
    return pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(blob: Any) -> Any:
    return pickle.loads(bytes(blob))  # noqa: S301 - bytes this driver's own workers produced (module docstring)


@dataclass(frozen=True)
class _Encoder:
    """A shipped encoder as it travels to the workers: where it is (the same path on every node) and its hash."""

    folder: str
    sha256: str
    batch_size: int


@dataclass(frozen=True)
class _EmbedderSpec:
    """What a worker needs to rebuild the driver's embedder and chunker (a loaded model does not travel): the
    settings' model, or with ``encoder`` the collection's shipped encoder (embedding only; chunking stays with the
    settings' model, whose tokenizer and name make the chunk ids)."""

    settings: Settings
    identity: EmbeddingIdentity
    max_tokens: int
    overlap: int
    chunker_id: str
    encoder: _Encoder | None = None

    def embedder(self) -> Embedder:
        embedder = load_embedder(self.settings) if self.encoder is None else self._shipped(self.encoder)
        if embedder.identity != self.identity:  # another model file on this node would give other vectors
            raise ConfigError(
                f"A Ray worker loaded embedder {embedder.identity.name} ({embedder.identity.weights_sha256[:12]}), "
                f"not the driver's {self.identity.name} ({self.identity.weights_sha256[:12]}): install the same "
                "model on every node"
            )
        return embedder

    def _shipped(self, encoder: _Encoder) -> Embedder:
        folder = Path(encoder.folder)
        try:
            verify_encoder(folder, encoder.sha256)  # this node's copy, byte for byte (~0.2 s for 90 MB, per actor)
        except PackError as exc:
            raise ConfigError(
                f"A Ray worker cannot use the collection's encoder {encoder.sha256[:12]} at {folder} ({exc}): the "
                "hub home must be at the same path on every node"
            ) from exc
        return load_encoder(folder, encoder.sha256, batch_size=encoder.batch_size)

    def for_embedder(self, embedder: Embedder) -> _EmbedderSpec:
        """The spec of the embedder the driver embeds with: this one's, or a shipped encoder by folder and hash."""
        if embedder.identity == self.identity:
            return self
        origin = encoder_origin(embedder)
        if origin is None:  # nothing a worker could load: refuse rather than embed with another model
            raise ConfigError(
                f"Ray workers can embed with the settings' model or a shipped encoder, not {embedder.identity.short()}"
            )
        encoder = _Encoder(str(origin[0]), origin[1], embedder.batch_size)
        return replace(self, identity=embedder.identity, encoder=encoder)

    def chunker(self, embedder: Embedder) -> Chunker:
        chunker = Chunker(embedder.count_tokens, self.max_tokens, self.overlap, self.identity.name)
        if chunker.id != self.chunker_id:  # other ids would make every chunk a new one
            raise ConfigError(f"A Ray worker's chunker is {chunker.id!r}, the driver's {self.chunker_id!r}")
        return chunker


def _read_task(batch: Batch, known: dict[str, str], limits: ReadLimits) -> Batch:
    """Read and parse one batch of files; one result row per file (a document, "unchanged" or an error)."""
    results: list[bytes] = []
    with open_parser(limits) as parse:
        for blob in batch["file"]:
            docs, unchanged, errors = read_batch([_unpack(blob)], known, limits, parse)
            results.append(_pack((docs, unchanged, errors)))
    return {"i": batch["i"], "result": np.array(results, dtype=object)}


class _ChunkActor:
    """Chunks documents with the embedder's own tokenizer (loaded once per actor)."""

    def __init__(self, spec: _EmbedderSpec) -> None:
        self.chunker = spec.chunker(spec.embedder())

    def __call__(self, batch: Batch) -> Batch:
        chunks = [_pack(self.chunker.chunk(_unpack(blob))) for blob in batch["doc"]]
        return {"i": batch["i"], "chunks": np.array(chunks, dtype=object)}


class _EncodeActor:
    """Embeds and quantises whole embedder batches, each on its own, so each text keeps its local neighbours."""

    def __init__(self, spec: _EmbedderSpec) -> None:
        from outpost.embed.quantize import quantize

        self.embedder = spec.embedder()
        self.quantize = quantize

    def __call__(self, batch: Batch) -> Batch:
        rows = [[self.quantize(self.embedder.embed(texts)) for texts in _unpack(blob)] for blob in batch["texts"]]
        return {"i": batch["i"], "encoded": np.array([_pack(r) for r in rows], dtype=object)}


class RayStages:
    """``pipeline.Stages`` on a Ray cluster already connected to (``ray_stages`` connects and disconnects)."""

    def __init__(self, spec: _EmbedderSpec, actors: int, gpus: float) -> None:
        self.spec = spec
        self.actors = actors
        self.gpus = gpus

    def read(
        self, files: list[SourceFile], known: dict[str, str], limits: ReadLimits, progress: Progress | None
    ) -> tuple[list[Document], list[str], list[LoadError]]:
        rows = self._run(
            [_pack(f) for f in files],
            "file",
            "result",
            _read_task,
            FILES_PER_TASK,
            fn_kwargs={"known": known, "limits": limits},
        )
        docs: list[Document] = []
        unchanged: list[str] = []
        errors: list[LoadError] = []
        for d, u, e in rows:
            docs += d
            unchanged += u
            errors += e
        if progress:
            progress("load", len(files), len(files))
        return docs, unchanged, errors

    def chunk(self, docs: list[Document]) -> list[Chunk]:
        rows = self._run([_pack(d) for d in docs], "doc", "chunks", _ChunkActor, DOCS_PER_BATCH, actor=True)
        return [chunk for chunks in rows for chunk in chunks]

    def encode(
        self, embedder: Embedder, texts: list[str], progress: Callable[[int], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        spec = self.spec.for_embedder(embedder)  # a switched collection's encoder, not the settings' model
        groups = list(length_batches(texts, embedder.batch_size))
        per_row = EMBED_BATCHES_PER_ROW
        rows = [[[texts[i] for i in g] for g in groups[at : at + per_row]] for at in range(0, len(groups), per_row)]
        encoded = self._run(
            [_pack(r) for r in rows], "texts", "encoded", _EncodeActor, 1, actor=True, gpu=True, spec=spec
        )
        vectors = np.zeros((len(texts), spec.identity.dimension), dtype=np.int8)
        scales = np.zeros(len(texts), dtype=np.float32)
        for index, (q, s) in zip(groups, (pair for row in encoded for pair in row)):
            vectors[index], scales[index] = q, s
        if progress:
            progress(len(texts))
        return vectors, scales

    def _run(
        self,
        items: list[bytes],
        column: str,
        result: str,
        fn: Any,
        batch_size: int,
        *,
        actor: bool = False,
        gpu: bool = False,
        fn_kwargs: dict[str, Any] | None = None,
        spec: _EmbedderSpec | None = None,
    ) -> list[Any]:
        """``map_batches(fn)`` over ``items``; the unpickled results in the order of ``items``; an actor gets
        ``spec`` (default: the stages' own)."""
        if not items:
            return []
        import ray.data

        dataset = ray.data.from_items([{"i": i, column: blob} for i, blob in enumerate(items)])
        options: dict[str, Any] = {"batch_size": batch_size, "batch_format": "numpy"}
        if actor:
            options["fn_constructor_kwargs"] = {"spec": spec or self.spec}
            options["compute"] = ray.data.ActorPoolStrategy(size=self.actors)
            if gpu and self.gpus:
                options["num_gpus"] = 1
        if fn_kwargs:
            options["fn_kwargs"] = fn_kwargs
        rows = dataset.map_batches(fn, **options).take_all()
        rows.sort(key=lambda row: int(row["i"]))
        return [_unpack(row[result]) for row in rows]


@contextmanager
def ray_stages(address: str | None, settings: Settings, embedder: Embedder, chunker: Chunker) -> Iterator[RayStages]:
    """Connect to the Ray cluster at ``address`` (None: ``RAY_ADDRESS`` or a new local one) for one ingest.

    One actor per GPU when the cluster has GPUs, else one per two CPUs (each actor holds its own model).
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ConfigError("Ingest on Ray needs Ray Data: pip install 'outpost[ray]'") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(f"Cannot connect to the Ray cluster at {address or 'auto'}: {exc}") from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # the CLI's output is Outpost's, not Ray's
        resources: dict[str, float] = ray.cluster_resources()
        gpus = float(resources.get("GPU", 0))
        actors = int(gpus) if gpus >= 1 else max(1, int(resources.get("CPU", 1)) // 2)
        spec = _EmbedderSpec(settings, embedder.identity, chunker.max_tokens, chunker.overlap, chunker.id)
        log.info("ingest on Ray: %d embedding actors, %g GPUs", actors, gpus)
        yield RayStages(spec, actors, gpus)
    finally:
        if started:
            ray.shutdown()
