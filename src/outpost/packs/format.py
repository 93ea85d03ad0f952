"""Packs: a Changeset on disk, in open formats, signed.

A pack is a folder of immutable files::

    manifest.json      what the pack is (collection, versions, model, chunker, codec, counts, file hashes)
    manifest.sig       Ed25519 signature (base64) over the exact bytes of manifest.json
    chunks.parquet     upserted chunks: id, document key, ordinal, page, heading, text, int8 vector, scale (zstd)
    documents.parquet  upserted document records
    deletes.parquet    deleted chunk ids and document keys

A snapshot has base version 0 and replaces a collection; a delta M→N carries exactly the chunks that
changed. Vectors travel as the same int8 bytes the store and ANN index hold, so nothing is
re-quantised on the way. Reading verifies the signature first, then every file's sha256, before a
single row is parsed.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from outpost.errors import PackError
from outpost.hashing import sha256_file
from outpost.packs.signing import public_key_text, sign, verify
from outpost.records import Adapter, Changeset, Chunk, DocumentRecord, EmbeddingIdentity

__all__ = ["FORMAT_VERSION", "PACK_FILES", "pack_name", "pack_versions", "read_manifest", "read_pack", "write_pack"]

FORMAT_VERSION = 1
DATA_FILES = ("chunks.parquet", "documents.parquet", "deletes.parquet")
ADAPTER_FILE = "adapter.npy"
PACK_FILES = ("manifest.json", "manifest.sig", *DATA_FILES, ADAPTER_FILE)  # the adapter only when there is one
CODEC = {"type": "int8", "scheme": "symmetric-per-vector", "scale": "float32"}


def pack_name(base_version: int, version: int) -> str:
    return f"snapshot-{version}" if base_version == 0 else f"delta-{base_version}-{version}"


def pack_versions(name: str) -> tuple[int, int] | None:
    """(base, version) from a pack name (the inverse of :func:`pack_name`); None for anything else."""
    parts = name.split("-")
    if parts[0] == "snapshot" and len(parts) == 2 and parts[1].isdigit():
        return 0, int(parts[1])
    if parts[0] == "delta" and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return int(parts[1]), int(parts[2])
    return None


def _chunks_table(cs: Changeset) -> pa.Table:
    dim = (
        cs.vectors.shape[1]
        if cs.vectors.ndim == 2 and cs.vectors.shape[1]
        else (cs.embedding.dimension if cs.embedding else 0)
    )
    flat = pa.array(np.ascontiguousarray(cs.vectors, dtype=np.int8).reshape(-1), type=pa.int8())
    c = cs.upserts
    return pa.table(
        {
            "id": pa.array([x.id for x in c], pa.string()),
            "doc_key": pa.array([x.doc_key for x in c], pa.string()),
            "ordinal": pa.array([x.ordinal for x in c], pa.int32()),
            "page": pa.array([x.page for x in c], pa.int32()),
            "heading": pa.array([x.heading for x in c], pa.string()),
            "text": pa.array([x.text for x in c], pa.string()),
            "token_count": pa.array([x.token_count for x in c], pa.int32()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim) if dim else pa.array([], pa.list_(pa.int8())),
            "scale": pa.array(np.asarray(cs.scales, dtype=np.float32), pa.float32()),
        }
    )


def _documents_table(cs: Changeset) -> pa.Table:
    rows = [asdict(d) for d in cs.documents]
    schema = pa.schema(
        [
            ("key", pa.string()),
            ("sha256", pa.string()),
            ("title", pa.string()),
            ("kind", pa.string()),
            ("size", pa.int64()),
            ("chunk_count", pa.int32()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _deletes_table(cs: Changeset) -> pa.Table:
    kinds = ["chunk"] * len(cs.delete_chunks) + ["document"] * len(cs.delete_documents)
    return pa.table(
        {"kind": pa.array(kinds, pa.string()), "id": pa.array([*cs.delete_chunks, *cs.delete_documents], pa.string())}
    )


def _manifest(cs: Changeset, folder: Path, signer: Ed25519PrivateKey) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "collection": cs.collection,
        "base_version": cs.base_version,
        "version": cs.version,
        "snapshot": cs.snapshot,
        "embedding": asdict(cs.embedding) if cs.embedding else None,
        "chunker_id": cs.chunker_id,
        "vector_codec": {**CODEC, "dimension": cs.embedding.dimension if cs.embedding else 0},
        "adapter": (
            {"version": cs.adapter.version, "sha256": cs.adapter.sha256(), "file": ADAPTER_FILE} if cs.adapter else None
        ),
        "counts": {
            "chunks": len(cs.upserts),
            "documents": len(cs.documents),
            "delete_chunks": len(cs.delete_chunks),
            "delete_documents": len(cs.delete_documents),
        },
        "files": {
            name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
            for name in (*DATA_FILES, ADAPTER_FILE)
            if (folder / name).is_file()
        },
        "hub_key": public_key_text(signer),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_pack(cs: Changeset, folder: Path, signer: Ed25519PrivateKey) -> dict[str, Any]:
    """Write ``cs`` as a signed pack at ``folder``, atomically (temp folder, fsync, rename)."""
    if cs.snapshot != (cs.base_version == 0):
        raise PackError("a snapshot has base version 0, and only a snapshot does")
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pq.write_table(_chunks_table(cs), tmp / "chunks.parquet", compression="zstd")
    pq.write_table(_documents_table(cs), tmp / "documents.parquet", compression="zstd")
    pq.write_table(_deletes_table(cs), tmp / "deletes.parquet", compression="zstd")
    if cs.adapter is not None:
        np.save(tmp / ADAPTER_FILE, np.ascontiguousarray(cs.adapter.matrix, dtype=np.float32), allow_pickle=False)
    manifest = _manifest(cs, tmp, signer)
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    (tmp / "manifest.json").write_bytes(raw)
    (tmp / "manifest.sig").write_bytes(sign(signer, raw))
    for path in tmp.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    os.replace(tmp, folder)
    return manifest


def read_manifest(folder: Path, hub_key: str) -> dict[str, Any]:
    """Verify signature and every file hash; return the manifest. Nothing is trusted before this."""
    try:
        raw = (folder / "manifest.json").read_bytes()
        signature = (folder / "manifest.sig").read_bytes()
    except FileNotFoundError as exc:
        raise PackError(f"Pack at {folder} is incomplete: {Path(exc.filename).name} is missing") from exc
    verify(hub_key, raw, signature)
    manifest = json.loads(raw)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise PackError(f"Unsupported pack format {manifest.get('format_version')!r}; upgrade Outpost")
    expected = set(DATA_FILES) | ({ADAPTER_FILE} if manifest.get("adapter") else set())
    if set(manifest["files"]) != expected:
        raise PackError(f"Pack lists unexpected files: {sorted(manifest['files'])}")
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise PackError(f"Pack file {name} does not match its manifest hash: refusing the pack")
    return manifest


def _vectors(table: pa.Table, dim: int) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, dim), dtype=np.int8)
    column = table.column("vector").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).astype(np.int8, copy=False).reshape(-1, dim)


def read_pack(folder: Path, hub_key: str) -> tuple[dict[str, Any], Changeset]:
    """A verified pack as (manifest, Changeset)."""
    m = read_manifest(folder, hub_key)
    dim = int(m["vector_codec"]["dimension"])
    chunks = pq.read_table(folder / "chunks.parquet")
    docs = pq.read_table(folder / "documents.parquet").to_pylist()
    deletes = pq.read_table(folder / "deletes.parquet").to_pylist()
    rows = chunks.drop_columns(["vector", "scale"]).to_pylist()
    counts = m["counts"]
    adapter = None
    if m.get("adapter"):
        adapter = Adapter(int(m["adapter"]["version"]), np.load(folder / ADAPTER_FILE, allow_pickle=False))
        if adapter.sha256() != m["adapter"]["sha256"] or adapter.matrix.shape != (dim, dim):
            raise PackError("Pack adapter does not match its manifest: refusing the pack")
    if len(rows) != counts["chunks"] or len(docs) != counts["documents"]:
        raise PackError("Pack row counts differ from its manifest: refusing the pack")
    cs = Changeset(
        collection=m["collection"],
        base_version=m["base_version"],
        version=m["version"],
        snapshot=m["snapshot"],
        upserts=[Chunk(**row) for row in rows],
        vectors=_vectors(chunks, dim),
        scales=chunks.column("scale").to_numpy().astype(np.float32),
        documents=[DocumentRecord(**d) for d in docs],
        delete_chunks=[d["id"] for d in deletes if d["kind"] == "chunk"],
        delete_documents=[d["id"] for d in deletes if d["kind"] == "document"],
        embedding=EmbeddingIdentity(**m["embedding"]) if m["embedding"] else None,
        chunker_id=m["chunker_id"],
        adapter=adapter,
    )
    return m, cs
