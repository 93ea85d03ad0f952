"""A small hub for the hub security tests: real SQLite, real signed packs, real uvicorn on 127.0.0.1.

The collections hold synthetic vectors (DIM values each) instead of a model's embeddings: what these
tests check (tokens, validation, limits, retention) does not depend on what the vectors mean, and no
model has to load. Hosted models are real GGUF files, written by the ``gguf`` package (tiny, one tensor).
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from outpost.embed.encoders import encoder_identity, write_encoder
from outpost.embed.quantize import quantize
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.records import Changeset, Chunk, EmbeddingIdentity, Revectors

DIM = 8
CHUNKS = 40


def chunk_id(collection: str, i: int) -> str:
    return f"{collection}-c{i}"


def synthetic_hub(home: Path, collections: tuple[str, ...] = ("docs", "secret"), seed: int = 0) -> Hub:
    """A hub (under OUTPOST_HOME ``home``) with one published version of each collection."""
    hub_home = HubHome.at(home)
    hub_home.init()
    hub = Hub(hub_home)
    rng = np.random.default_rng(seed)
    for name in collections:
        store = hub.store(name, create=True)
        vectors = rng.normal(size=(CHUNKS, DIM)).astype(np.float32)
        q, scales = quantize(vectors)
        chunks = [Chunk(chunk_id(name, i), f"{name}/d{i}.txt", 0, f"{name} document {i}") for i in range(CHUNKS)]
        identity = EmbeddingIdentity("synthetic", "0" * 64, DIM, 256)
        hub.publish(store, Changeset(name, 0, chunks, q, scales, embedding=identity))
        store.close()
    return hub


def ship_encoder(hub: Hub, name: str, seed: int = 1) -> str:
    """Switch collection ``name`` to a shipped query encoder, as ``hub.embedder.publish_embedder`` does; returns its
    sha256. The graph and tokenizer are stand-in bytes: the hub only serves them, nothing here runs them."""
    with tempfile.TemporaryDirectory() as tmp:
        graph, tokenizer = Path(tmp) / "graph", Path(tmp) / "tokenizer"
        graph.write_bytes(b"stand-in graph " * 64)
        tokenizer.write_text("{}")
        folder = hub.home.root / "encoders" / ".staged"
        ref, spec = write_encoder(
            folder,
            name="synthetic+ft-0",
            base="synthetic",
            graph=graph,
            tokenizer=tokenizer,
            dimension=DIM,
            max_seq_length=256,
            variant="fp32",
            probe_min_cosine=1.0,
        )
    folder.replace(folder.parent / ref.sha256)
    store = hub.store(name)
    try:
        ids = [c.id for c in store.snapshot().upserts]
        q, scales = quantize(np.random.default_rng(seed).normal(size=(len(ids), DIM)).astype(np.float32))
        identity = encoder_identity(spec, ref.sha256)
        hub.publish(store, Changeset(name, store.version, embedding=identity, revectors=Revectors(ids, q, scales)))
    finally:
        store.close()
    return ref.sha256


def item(collection: str = "docs", dim: int = DIM, chunks: tuple[int, ...] = (0, 1), **fields: Any) -> dict[str, Any]:
    """A well-formed feedback item, as ``FeedbackItem.payload`` sends it, showing ``chunks`` (by number);
    ``fields`` override any part."""
    ids = [chunk_id(collection, i) for i in chunks]
    body: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "query_vector": [0.5] * dim,
        "query": None,
        "shown": ids,
        "answer_vote": 1,
        "source_votes": {ids[0]: 1} if ids else {},
    }
    return {**body, **fields}


def tiny_gguf(path: Path) -> Path:
    """A real (if useless) GGUF file: a header, metadata and one small tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
