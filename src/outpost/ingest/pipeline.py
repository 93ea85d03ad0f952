"""Ingest: files → documents → chunks → int8 vectors → one Changeset → ``store.apply``.

The stages are pure functions over batches (``read_batch``, ``Chunker.chunk_batch``,
``embed_chunks``); ``plan`` and ``ingest`` only glue them to one store. Where they run is a
``Stages`` object: ``LocalStages`` (this process, the default) or ``ingest/ray_pipeline.py``'s
``RayStages`` (Ray Data ``map_batches`` on a cluster); either way one writer applies one Changeset.

Files are untrusted input: ``read_regular_file`` reads only regular files inside the ingest
root (no link followed, size-capped) and parsing runs in a worker process that is killed when a
file exceeds its time budget (``isolation.py``); each refused file becomes one ``LoadError`` in
the report and the rest of the ingest goes on.

What is skipped, and why it is cheap to re-run:
- a document whose key and sha256 are unchanged is not even parsed;
- a changed document's chunks that kept their id (same chunker, key and embedded text) reuse the
  stored vector; only new text is embedded.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import numpy as np

from outpost.embed.base import Embedder
from outpost.embed.quantize import quantize
from outpost.errors import LoadError, VersionConflictError
from outpost.ingest.chunker import Chunker, embedding_text
from outpost.ingest.discover import SourceFile
from outpost.ingest.fileread import read_regular_file
from outpost.ingest.isolation import Parse, open_parser
from outpost.ingest.limits import ReadLimits
from outpost.ingest.loaders import supported
from outpost.records import Changeset, Chunk, Document, DocumentRecord
from outpost.store.sqlite import Store

__all__ = ["IngestReport", "LocalStages", "Stages", "embed_chunks", "ingest", "plan", "plan_documents", "read_batch"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, advance, total)
PLAN_TRIES = 2  # a plan that met another writer's version is made once more, on that version
Encode = Callable[[list[str], Callable[[int], None] | None], tuple[np.ndarray, np.ndarray]]  # texts → int8, scales


@dataclass
class IngestReport:
    """What one ingest did; ``failures`` are (document key, reason)."""

    collection: str
    version: int
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_reused: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


class Stages(Protocol):
    """Where the pure batch stages run; planning (what changed, what is reused) stays with the one writer."""

    def read(
        self, files: list[SourceFile], known: dict[str, str], limits: ReadLimits, progress: Progress | None
    ) -> tuple[list[Document], list[str], list[LoadError]]:
        """``read_batch`` over all ``files``: (documents in file order, unchanged keys, errors)."""
        ...

    def chunk(self, docs: list[Document]) -> list[Chunk]:
        """``Chunker.chunk_batch`` over ``docs``, chunks in document order."""
        ...

    def encode(
        self, embedder: Embedder, texts: list[str], progress: Callable[[int], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Embed with ``embedder`` then quantise: int8 vectors and float32 scales aligned with ``texts``.

        ``embedder`` is the one the plan checked against the collection's identity (a fine-tuned collection's
        shipped encoder, not necessarily the model the stages chunk with): stages that run elsewhere must
        rebuild exactly it there, or refuse.
        """
        ...


@dataclass(frozen=True)
class LocalStages:
    """The stages in this process (the default)."""

    chunker: Chunker

    def read(
        self, files: list[SourceFile], known: dict[str, str], limits: ReadLimits, progress: Progress | None
    ) -> tuple[list[Document], list[str], list[LoadError]]:
        return _read_with_progress(files, known, progress, limits)

    def chunk(self, docs: list[Document]) -> list[Chunk]:
        return self.chunker.chunk_batch(docs)

    def encode(
        self, embedder: Embedder, texts: list[str], progress: Callable[[int], None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        return _encode_here(embedder, texts, progress)


def _encode_here(
    embedder: Embedder, texts: list[str], progress: Callable[[int], None] | None
) -> tuple[np.ndarray, np.ndarray]:
    return quantize(embedder.embed(texts, progress=progress))


def read_batch(
    files: list[SourceFile],
    known: dict[str, str],
    limits: ReadLimits | None = None,
    parse: Parse | None = None,
) -> tuple[list[Document], list[str], list[LoadError]]:
    """Read and parse files whose content hash differs from ``known``; returns (docs, unchanged keys, errors).

    Each file is read by ``read_regular_file`` (regular files inside their root only, at most
    ``limits.max_bytes``) and parsed by ``parse`` (default: a worker process that abandons a file
    after ``limits.timeout_s``). Pass one ``parse`` for many batches to reuse its worker.
    """
    limits = limits or ReadLimits.default()
    if parse is None:
        with open_parser(limits) as own:
            return read_batch(files, known, limits, own)
    docs: list[Document] = []
    unchanged: list[str] = []
    errors: list[LoadError] = []
    for item in files:
        try:
            if item.problem is None and not supported(item.path):
                raise LoadError(item.key, f"unsupported file type {item.path.suffix or '(no suffix)'!r}")
            data = read_regular_file(item, limits.max_bytes)
            if known.get(item.key) == hashlib.sha256(data).hexdigest():
                unchanged.append(item.key)
                continue
            docs.append(parse(data, item.key))
        except LoadError as exc:
            errors.append(exc)
        except (OSError, MemoryError) as exc:  # the machine failed on this one file: report it, go on with the rest
            errors.append(LoadError(item.key, f"could not be read or parsed ({type(exc).__name__}: {exc})"))
    return docs, unchanged, errors


def embed_chunks(
    chunks: list[Chunk],
    embedder: Embedder,
    reuse: dict[str, tuple[np.ndarray, float]],
    progress: Progress | None = None,
    encode: Encode | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """int8 vectors and scales aligned with ``chunks``; ids in ``reuse`` are not re-embedded.

    ``encode`` embeds and quantises the rest (default: ``embedder`` here). Returns (vectors, scales, number embedded).
    """
    dim = embedder.identity.dimension
    vectors = np.zeros((len(chunks), dim), dtype=np.int8)
    scales = np.zeros(len(chunks), dtype=np.float32)
    todo = [i for i, c in enumerate(chunks) if c.id not in reuse]
    for i, chunk in enumerate(chunks):
        if chunk.id in reuse:
            vectors[i], scales[i] = reuse[chunk.id]
    if todo:
        tick = (lambda n: progress("embed", n, len(todo))) if progress else None
        q, s = (encode or partial(_encode_here, embedder))([embedding_text(chunks[i]) for i in todo], tick)
        vectors[todo], scales[todo] = q, s
    return vectors, scales, len(todo)


def _moved(old: dict[str, tuple[int, int | None]], chunk: Chunk) -> bool:
    return chunk.id in old and old[chunk.id] != (chunk.ordinal, chunk.page)


def plan(
    store: Store,
    files: list[SourceFile],
    embedder: Embedder,
    chunker: Chunker,
    sync: bool = False,
    progress: Progress | None = None,
    limits: ReadLimits | None = None,
    stages: Stages | None = None,
) -> tuple[Changeset, IngestReport]:
    """The changeset that brings ``store`` in line with ``files`` (not yet applied), and its report.

    ``embedder`` embeds the new chunks wherever ``stages`` run (it must carry the collection's identity: the
    caller resolves a fine-tuned collection's encoder, ``encoder_for``); ``chunker`` cuts them.
    """
    stages = stages or LocalStages(chunker)
    known = store.document_hashes()
    docs, unchanged, errors = stages.read(files, known, limits or ReadLimits.default(), progress)
    present = {f.key for f in files} if sync else None
    changeset, report = plan_documents(store, docs, embedder, chunker, present, progress, stages)
    report.unchanged = len(unchanged)
    report.failures = [(e.path, e.reason) for e in errors]
    return changeset, report


def plan_documents(
    store: Store,
    docs: list[Document],
    embedder: Embedder,
    chunker: Chunker,
    present: set[str] | None = None,
    progress: Progress | None = None,
    stages: Stages | None = None,
) -> tuple[Changeset, IngestReport]:
    """The changeset for already-loaded documents (files, a dataset, an API); ``present`` enables removal.

    Documents whose key and sha256 the store already has are skipped; with ``present``, stored
    documents not in it are removed.
    """
    store.check_embedding(embedder.identity)
    with store.reading():  # the base is read first, with what is planned against: a later change conflicts at apply
        base = store.version
        known = store.document_hashes()
    unchanged = [d for d in docs if known.get(d.key) == d.sha256]
    docs = [d for d in docs if known.get(d.key) != d.sha256]
    stages = stages or LocalStages(chunker)
    chunks = stages.chunk(docs)
    old = store.chunk_positions([d.key for d in docs if d.key in known])
    gone = sorted(set(known) - present) if present is not None else []

    new_ids = {c.id for c in chunks}
    upserts = [c for c in chunks if c.id not in old or _moved(old, c)]
    upsert_ids = {c.id for c in upserts}
    delete_chunks = [i for i in old if i not in new_ids or i in upsert_ids]
    delete_chunks += store.chunk_ids(gone)
    reuse = store.stored_vectors(list(old))
    vectors, scales, embedded = embed_chunks(upserts, embedder, reuse, progress, partial(stages.encode, embedder))

    per_doc = {d.key: 0 for d in docs}
    for c in chunks:
        per_doc[c.doc_key] += 1
    changeset = Changeset(
        collection=store.name,
        base_version=base,
        upserts=upserts,
        vectors=vectors,
        scales=scales,
        documents=[DocumentRecord(d.key, d.sha256, d.title, d.kind, d.size, per_doc[d.key]) for d in docs],
        delete_chunks=delete_chunks,
        delete_documents=gone,
        embedding=embedder.identity,
        chunker_id=chunker.id,
    )
    report = IngestReport(
        collection=store.name,
        version=base,
        added=[d.key for d in docs if d.key not in known],
        updated=[d.key for d in docs if d.key in known],
        removed=gone,
        unchanged=len(unchanged),
        chunks_embedded=embedded,
        chunks_reused=len(upserts) - embedded,
    )
    return changeset, report


def ingest(
    store: Store,
    files: list[SourceFile],
    embedder: Embedder,
    chunker: Chunker,
    sync: bool = False,
    progress: Progress | None = None,
    limits: ReadLimits | None = None,
    stages: Stages | None = None,
) -> IngestReport:
    """Bring ``store`` in line with ``files`` in one changeset (one new version, or none).

    The collection's write lock is held from planning to apply, so a second ingest (another process) waits and
    then plans on this one's result. A writer that bypasses the lock still cannot slip in unnoticed: the plan's
    base version is checked at apply, and a conflict is planned again (``PLAN_TRIES`` in all).
    """
    with store.writing():
        tries = 1
        while True:
            changeset, report = plan(store, files, embedder, chunker, sync, progress, limits, stages)
            if changeset.is_empty():
                return report
            try:
                report.version = store.apply(changeset)
                store.checkpoint()  # the collection's real size on disk at once, not twice it until closed
                return report
            except VersionConflictError:
                if tries == PLAN_TRIES:
                    raise
                tries += 1
                log.warning("collection %r changed while this ingest planned; planning again", store.name)


def _read_with_progress(
    files: list[SourceFile], known: dict[str, str], progress: Progress | None, limits: ReadLimits, batch: int = 32
) -> tuple[list[Document], list[str], list[LoadError]]:
    """``read_batch`` over ``files`` in batches, one parse worker for all of them."""
    docs: list[Document] = []
    unchanged: list[str] = []
    errors: list[LoadError] = []
    with open_parser(limits) as parse:
        for start in range(0, len(files), batch):
            part = files[start : start + batch]
            d, u, e = read_batch(part, known, limits, parse)
            docs += d
            unchanged += u
            errors += e
            if progress:
                progress("load", len(part), len(files))
    return docs, unchanged, errors
