"""Compose consecutive deltas M→…→N into one delta M→N (what the hub serves to a client at M).

The result, applied on version M, leaves exactly the state that applying each delta in turn would:
every delete is kept (deleting an id the client lacks is a no-op), and an id's last upsert wins
unless a later delta deleted it.

A delta that switches embedder (``revectors``) gives new vectors to every chunk it found: an earlier upsert in
the chain takes its new vector, a chunk the client already had keeps a new vector to apply, and a later upsert
or delete supersedes both. So the squashed delta, too, leaves no vector of the old embedder behind.
"""

from __future__ import annotations

import numpy as np

from outpost.errors import PackError
from outpost.records import Changeset, Chunk, DocumentRecord, Revectors

__all__ = ["squash"]


def squash(chain: list[Changeset]) -> Changeset:
    if not chain:
        raise PackError("nothing to squash")
    for prev, nxt in zip(chain, chain[1:]):
        if nxt.base_version != prev.version:
            raise PackError(f"deltas are not consecutive: {prev.version} then base {nxt.base_version}")
    upserts: dict[str, tuple[Chunk, np.ndarray, float]] = {}
    deletes: dict[str, None] = {}
    documents: dict[str, DocumentRecord] = {}
    doc_deletes: dict[str, None] = {}
    revectors: dict[str, tuple[np.ndarray, float]] | None = None
    for cs in chain:
        for cid in cs.delete_chunks:
            upserts.pop(cid, None)
            deletes[cid] = None
            if revectors is not None:
                revectors.pop(cid, None)
        for key in cs.delete_documents:
            documents.pop(key, None)
            doc_deletes[key] = None
        if cs.revectors is not None:
            revectors = _revector(upserts, revectors, cs.revectors)
        for i, chunk in enumerate(cs.upserts):
            upserts[chunk.id] = (chunk, cs.vectors[i], float(cs.scales[i]))
            if revectors is not None:
                revectors.pop(chunk.id, None)
        for doc in cs.documents:
            documents[doc.key] = doc
    first, last = chain[0], chain[-1]
    dim = last.embedding.dimension if last.embedding else last.vectors.shape[1]
    rows = list(upserts.values())
    return Changeset(
        collection=last.collection,
        base_version=first.base_version,
        version=last.version,
        snapshot=first.snapshot,
        upserts=[r[0] for r in rows],
        vectors=np.array([r[1] for r in rows], dtype=np.int8).reshape(len(rows), dim),
        scales=np.array([r[2] for r in rows], dtype=np.float32),
        documents=list(documents.values()),
        delete_chunks=list(deletes),
        delete_documents=list(doc_deletes),
        embedding=last.embedding,
        chunker_id=last.chunker_id,
        adapter=next((cs.adapter for cs in reversed(chain) if cs.adapter is not None), None),
        revectors=_revectors(revectors, dim),
        encoder=next((cs.encoder for cs in reversed(chain) if cs.encoder and cs.embedding == last.embedding), None),
    )


def _revector(
    upserts: dict[str, tuple[Chunk, np.ndarray, float]],
    earlier: dict[str, tuple[np.ndarray, float]] | None,
    rv: Revectors,
) -> dict[str, tuple[np.ndarray, float]]:
    """Fold one switch of embedder in: upserts of the chain so far take their new vectors, the rest stay to apply."""
    pending = dict(earlier or {})
    for i, cid in enumerate(rv.ids):
        vector, scale = rv.vectors[i], float(rv.scales[i])
        if cid in upserts:
            upserts[cid] = (upserts[cid][0], vector, scale)
        else:
            pending[cid] = (vector, scale)
    return pending


def _revectors(pending: dict[str, tuple[np.ndarray, float]] | None, dim: int) -> Revectors | None:
    if pending is None:
        return None
    rows = list(pending.values())
    return Revectors(
        list(pending),
        np.array([r[0] for r in rows], dtype=np.int8).reshape(len(rows), dim),
        np.array([r[1] for r in rows], dtype=np.float32),
    )
