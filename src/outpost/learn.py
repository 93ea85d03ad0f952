"""Learning helpers that both sides need: a collection's vectors, and labelled queries as training examples.

The hub trains adapters from feedback (:mod:`outpost.hub.learning`) and ``outpost eval --adapter-from``
trains one from a BEIR split (:mod:`outpost.evaluate`); both read a collection the same way, through the
store's public reads, and turn judgements into :class:`outpost.adapt.Example` the same way. Kept in the
core so that evaluation never imports hub code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from outpost.adapt import Example
from outpost.embed.base import Embedder
from outpost.embed.quantize import dequantize
from outpost.store.sqlite import Store

__all__ = ["collection_vectors", "doc_chunks", "qrels_examples"]


def collection_vectors(store: Store) -> tuple[list[str], np.ndarray]:
    """Chunk ids and their float vectors (dequantised from the shipped int8 bytes), in store order."""
    ids, q, scales = store.vectors()
    return ids, dequantize(q, scales)


def doc_chunks(store: Store) -> dict[str, list[str]]:
    """Document key → its chunk ids; a qrels id matches a key or a key's stem (``MED-10`` ~ ``MED-10.md``)."""
    out: dict[str, list[str]] = {}
    for key, cids in store.chunks_by_document().items():
        out.setdefault(key, []).extend(cids)
        stem = Path(key).stem
        if stem != key:
            out.setdefault(stem, []).extend(cids)
    return out


def qrels_examples(
    store: Store, embedder: Embedder, qrels: dict[str, dict[str, int]], queries: dict[str, str], negatives: int = 8
) -> list[Example]:
    """Labelled queries as examples: each relevant document's best chunk is a positive, the top dense
    hits from unjudged documents are hard negatives."""
    ids, vectors = collection_vectors(store)
    index = {cid: i for i, cid in enumerate(ids)}
    docs = doc_chunks(store)
    normed = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    chunk_doc = {cid: key for key, cids in docs.items() for cid in cids}
    qids = [q for q in qrels if q in queries]
    embedded = embedder.embed([queries[q] for q in qids])
    out: list[Example] = []
    for qid, qvec in zip(qids, embedded):
        scores = normed @ qvec
        relevant = {d for d, rel in qrels[qid].items() if rel > 0}
        # each relevant document's best chunk first (these are trained on), then its other chunks
        # (held-out evaluation counts a hit on any chunk of a relevant document)
        best = sorted(
            (max(docs[d], key=lambda c: scores[index[c]]) for d in relevant if d in docs),
            key=lambda c: -scores[index[c]],
        )
        positives = best + [c for d in relevant if d in docs for c in docs[d] if c not in set(best)]
        judged = set(qrels[qid])
        hard = [
            ids[i]
            for i in np.argsort(-scores)[: negatives * 4]
            if chunk_doc.get(ids[i]) not in judged and Path(chunk_doc.get(ids[i], "")).stem not in judged
        ]
        if positives:
            out.append(Example(qvec.astype(np.float32), tuple(positives), tuple(hard[:negatives]), key=qid))
    return out
