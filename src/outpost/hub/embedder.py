"""Ship a fine-tuned embedder: export its query encoder, re-embed the collection with it, publish one version.

A fine-tuned embedder is a new :class:`EmbeddingIdentity` (DESIGN.md §11), so a collection switches to it whole,
in one version, and laptops receive the encoder they need to embed queries the same way:

1. **Export.** The sentence-transformers folder is exported to ONNX by ``outpost.embed.onnx_export`` (encoder +
   mean pooling in one graph) and probe-checked against sentence-transformers on the same folder (cosine ≥ 0.999
   on every probe for fp32), so the gate's figures, measured with the torch model, hold for what ships. fp32 is
   the default: int8 (``variant="int8"``) is only a third smaller (58.7 against 90.4 MB: the word-embedding table
   stays fp32) but moves vectors by up to 0.03 cosine on the probes (``INT8_MIN_COSINE``), which the gate never
   measured; the encoder travels once per laptop, so its size matters little.
2. **Encoder.** Graph + ``tokenizer.json`` + ``encoder.json`` in ``hub/encoders/<sha256>/`` (``outpost.embed.
   encoders``); the sha256 of ``encoder.json`` is the identity's ``weights_sha256`` and every later pack's
   manifest names it, so the signature covers the encoder's bytes.
3. **Re-embed** every chunk with exactly that graph (``load_encoder``), so document and query vectors come from
   one encoder. The chunks are read and embedded outside the collection's write lock; under it, the chunks an
   ingest added meanwhile are embedded too, and the version is published from the state it was checked on.
4. **Publish** one version carrying only ``vectors.parquet`` (ids, int8 vectors, scales: ~400 bytes a chunk),
   the new identity and the encoder reference. ``Store.apply`` refuses it unless every chunk gets a new vector.

A rollback (:func:`rollback_embedder`) is a version made the same way with the previous identity's encoder (or
the base model's embedder when the previous identity was the base model). Each switch is recorded with its
gate ``metrics`` in the collection's ``x:embedders`` metadata; ``outpost hub collections --json`` shows them.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from outpost.embed.base import Embedder
from outpost.embed.encoders import (
    ENCODER_JSON,
    encoders_dir,
    load_encoder,
    parse_encoder_json,
    write_encoder,
)
from outpost.embed.local_model import LocalModel, weights_sha256
from outpost.embed.onnx_export import ensure_export
from outpost.embed.quantize import quantize
from outpost.errors import ConfigError, ModelMismatchError
from outpost.home import ensure_private_dir
from outpost.hub.service import Hub
from outpost.ingest.chunker import embedding_text
from outpost.packs.format import pack_name
from outpost.records import Adapter, Changeset, Chunk, EmbeddingIdentity, EncoderRef, Revectors
from outpost.store.sqlite import Store

__all__ = [
    "EmbedderVersion",
    "build_encoder",
    "embedder_history",
    "publish_embedder",
    "rollback_embedder",
    "switch_embedder",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, advance, total)
HISTORY_KEY = "embedders"
_FT = "+ft-"


@dataclass(frozen=True)
class EmbedderVersion:
    """One switch of a collection's embedder, as ``hub collections --json`` shows it."""

    version: int
    kind: str  # "fine-tuned" or "rollback"
    embedding: dict[str, Any]
    previous: dict[str, Any] | None
    encoder: dict[str, Any] | None  # {"sha256", "bytes", "graph_bytes", "variant"}; None for the base model
    metrics: dict[str, Any]
    chunks: int
    reembed_seconds: float
    pack_bytes: int
    bytes_per_chunk: float
    published_at: str


def publish_embedder(
    hub: Hub,
    collection: str,
    model_dir: Path,
    metrics: dict[str, Any],
    *,
    variant: Literal["fp32", "int8"] = "fp32",
    progress: Progress | None = None,
) -> int:
    """Export ``model_dir``'s query encoder, re-embed every chunk of ``collection`` with it, and publish one
    version with the new identity; returns that version. ``metrics`` (the gate's figures) are recorded with it."""
    folder, ref = build_encoder(hub, collection, Path(model_dir), variant)
    embedder = load_encoder(folder, ref.sha256)
    return switch_embedder(hub, collection, embedder, metrics, encoder=ref, kind="fine-tuned", progress=progress)


def rollback_embedder(
    hub: Hub,
    collection: str,
    base_embedder: Embedder | None = None,
    metrics: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> int:
    """Publish a version that goes back to the embedder the collection had before its latest switch.

    The previous identity's encoder, if the hub shipped one; otherwise ``base_embedder`` must carry exactly that
    identity (the base model, e.g. ``load_embedder(settings)``), or the rollback is refused with what to pass.
    """
    history = embedder_history(hub, collection)
    if not history or history[-1].previous is None:
        raise ConfigError(f"Hub collection {collection!r} has no earlier embedder to roll back to")
    previous = EmbeddingIdentity(**history[-1].previous)
    found = hub.encoder(previous)
    if found is not None:
        embedder: Embedder = load_encoder(found[0], found[1].sha256)
        ref: EncoderRef | None = found[1]
    elif base_embedder is not None and base_embedder.identity == previous:
        embedder, ref = base_embedder, None
    else:
        given = base_embedder.identity.short() if base_embedder else "none"
        raise ModelMismatchError(
            f"Rolling {collection!r} back needs the embedder {previous.short()} (given: {given}); run it with "
            f"--embed-model {previous.name!r}"
        )
    return switch_embedder(hub, collection, embedder, metrics or {}, encoder=ref, kind="rollback", progress=progress)


def build_encoder(
    hub: Hub, collection: str, model_dir: Path, variant: Literal["fp32", "int8"]
) -> tuple[Path, EncoderRef]:
    """Export and probe-check ``model_dir``, and keep its encoder in ``hub/encoders/<sha256>/`` (once)."""
    model = LocalModel.find(str(model_dir))
    if model is None or not model.plain_mean_pooling():
        raise ConfigError(
            f"{model_dir} is not a sentence-transformers folder with mean pooling (Transformer → Pooling → "
            "Normalize): only such models export to the laptops' ONNX encoder"
        )
    base = _base_name(hub, collection)
    weights = weights_sha256(model.folder)
    root = ensure_private_dir(encoders_dir(hub.home.root))
    export = ensure_export(model, weights, root / ".onnx-cache", variant)
    if not export.accepted:
        raise ModelMismatchError(
            f"The ONNX {variant} export of {model_dir} differs from sentence-transformers (probe cosine "
            f"{export.min_cosine:.4f} < {export.threshold}): not shipped"
        )
    identity = model.identity()
    with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
        staged = Path(tmp) / "encoder"
        ref, _ = write_encoder(
            staged,
            name=f"{base}{_FT}{weights[:12]}" + ("-int8" if variant == "int8" else ""),
            base=base,
            graph=export.graph_path(root / ".onnx-cache"),
            tokenizer=model.tokenizer_file,
            dimension=identity.dimension,
            max_seq_length=identity.max_seq_length,
            variant=variant,
            probe_min_cosine=export.min_cosine,
        )
        final = root / ref.sha256
        if not (final / ENCODER_JSON).is_file():
            shutil.rmtree(final, ignore_errors=True)  # a half copy from a killed run
            staged.replace(final)
    log.info("encoder %s of %s: %s", ref.sha256[:12], model_dir, final)
    return final, ref


def _base_name(hub: Hub, collection: str) -> str:
    """The collection's base model name, without an earlier fine-tune's suffix."""
    identity = hub.info(collection).embedding
    if identity is None:
        raise ConfigError(f"Hub collection {collection!r} has no embedded chunks yet: ingest before fine-tuning")
    return identity.name.split(_FT)[0]


def switch_embedder(
    hub: Hub,
    collection: str,
    embedder: Embedder,
    metrics: dict[str, Any],
    *,
    encoder: EncoderRef | None = None,
    kind: str = "switch",
    progress: Progress | None = None,
) -> int:
    """Re-embed the whole collection with ``embedder`` and publish it as one version (see the module doc).

    ``encoder`` is the shipped encoder ``embedder`` runs (its identity names it); None for an embedder every laptop
    has (the base model). Returns the version.
    """
    ref = encoder
    store = hub.store(collection)
    try:
        previous = store.embedding
        if previous is None:
            raise ConfigError(f"Hub collection {collection!r} has no embedded chunks yet: ingest before fine-tuning")
        if previous == embedder.identity:
            raise ConfigError(f"Hub collection {collection!r} already uses {previous.short()}: nothing to publish")
        started = time.perf_counter()
        done = _embed_missing(store, embedder, {}, progress)  # outside the lock: ingests go on meanwhile
        with store.writing():
            chunks = _embed_missing(store, embedder, done, progress)
            ids = [c.id for c in _chunks(store)]
            if not ids:
                raise ConfigError(f"Hub collection {collection!r} holds no chunks: nothing to re-embed")
            seconds = time.perf_counter() - started
            changeset = Changeset(
                collection=store.name,
                base_version=store.version,
                embedding=embedder.identity,
                chunker_id=store.chunker_id,
                revectors=Revectors(ids, np.stack([chunks[i][0] for i in ids]), np.array([chunks[i][1] for i in ids])),
                encoder=ref,
                adapter=_reset_adapter(hub, store),
            )
            version = hub.publish(store, changeset)
            record = _record(hub, store, version, kind, previous, embedder, ref, metrics, len(ids), seconds)
        log.info(
            "%s: version %d embeds with %s (%d chunks in %.1f s, pack %.0f bytes/chunk)",
            collection,
            version,
            embedder.identity.short(),
            record.chunks,
            record.reembed_seconds,
            record.bytes_per_chunk,
        )
        return version
    finally:
        store.close()


def _chunks(store: Store) -> list[Chunk]:
    return store.snapshot().upserts


def _embed_missing(
    store: Store, embedder: Embedder, done: dict[str, tuple[np.ndarray, float]], progress: Progress | None
) -> dict[str, tuple[np.ndarray, float]]:
    """Vectors for every chunk of the collection now, embedding only those not in ``done`` (batched, sorted)."""
    chunks = _chunks(store)
    todo = [c for c in chunks if c.id not in done]
    out = {c.id: done[c.id] for c in chunks if c.id in done}
    if todo:
        tick = (lambda n: progress("embed", n, len(todo))) if progress else None
        q, scales = quantize(embedder.embed([embedding_text(c) for c in todo], progress=tick))
        out.update({c.id: (q[i], float(scales[i])) for i, c in enumerate(todo)})
    return out


def _reset_adapter(hub: Hub, store: Store) -> Adapter | None:
    """A query adapter learned on the old embedder's vectors means nothing on the new one: ship the identity."""
    current = store.adapter
    if current is None:
        return None
    version = hub.home.metadata().next_adapter_version(store.name, current.version + 1)
    dim = current.matrix.shape[0]
    return Adapter(version, np.eye(dim, dtype=np.float32))


def _record(
    hub: Hub,
    store: Store,
    version: int,
    kind: str,
    previous: EmbeddingIdentity,
    embedder: Embedder,
    ref: EncoderRef | None,
    metrics: dict[str, Any],
    chunks: int,
    seconds: float,
) -> EmbedderVersion:
    """Append the switch to the collection's embedder history (metadata kept in its own store)."""
    pack = hub.public_packs_dir(store.name) / pack_name(version - 1, version)
    pack_bytes = sum(f.stat().st_size for f in pack.iterdir() if f.is_file()) if pack.is_dir() else 0
    encoder = None
    if ref is not None:
        found = hub.encoder(embedder.identity)
        spec = parse_encoder_json((found[0] / ENCODER_JSON).read_bytes()) if found else None
        encoder = {
            **asdict(ref),
            "graph_bytes": spec.files["model.onnx"][1] if spec else 0,
            "variant": spec.variant if spec else "",
        }
    record = EmbedderVersion(
        version=version,
        kind=kind,
        embedding=asdict(embedder.identity),
        previous=asdict(previous),
        encoder=encoder,
        metrics=dict(metrics),
        chunks=chunks,
        reembed_seconds=round(seconds, 3),
        pack_bytes=pack_bytes,
        bytes_per_chunk=round(pack_bytes / chunks, 1) if chunks else 0.0,
        published_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    raw = store.get_meta(HISTORY_KEY)
    history = json.loads(raw) if raw else []
    store.set_meta(**{HISTORY_KEY: json.dumps([*history, asdict(record)], sort_keys=True)})
    return record


def embedder_history(hub: Hub, collection: str) -> list[EmbedderVersion]:
    """Every switch of the collection's embedder, oldest first (empty for one never fine-tuned)."""
    store = hub.store(collection)
    try:
        raw = store.get_meta(HISTORY_KEY)
    finally:
        store.close()
    return [EmbedderVersion(**entry) for entry in json.loads(raw)] if raw else []
