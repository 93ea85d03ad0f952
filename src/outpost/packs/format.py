"""Packs: a Changeset on disk, in open formats, signed.

A pack is a folder of immutable files::

    manifest.json      what the pack is (collection, versions, model, chunker, codec, counts, file hashes)
    manifest.sig       Ed25519 signature (base64) over the exact bytes of manifest.json
    chunks.parquet     upserted chunks: id, document key, ordinal, page, heading, text, int8 vector, scale (zstd)
    documents.parquet  upserted document records
    deletes.parquet    deleted chunk ids and document keys
    vectors.parquet    only when the collection switches embedder: new int8 vectors of the chunks it holds
    adapter.npy        only with a query adapter

A collection whose embedder the hub fine-tuned ships a query encoder (``outpost.embed.encoders``): its manifest
names it (``encoder``: sha256 and size of its ``encoder.json``, which lists the graph's and tokenizer's hashes), so
the manifest's signature covers every byte of the encoder; the identity's ``weights_sha256`` is that same hash.
Such packs are format 2 (``FORMAT_ENCODER``); every other pack stays format 1, so laptops that predate encoders
still sync ordinary collections, and refuse a fine-tuned one with "Unsupported pack format 2; upgrade Outpost".

A snapshot has base version 0 and replaces a collection; a delta M→N carries exactly the chunks that
changed. Vectors travel as the same int8 bytes the store and ANN index hold, so nothing is
re-quantised on the way. Reading verifies the signature first, then every file's sha256, before a
single row is parsed; then the manifest's shape and every table's schema are checked, so even a pack
signed by the pinned key (a compromised hub) can only be refused with a ``PackError``, never crash the
reader or put rows of the wrong type into a store.

Pack and file names follow one grammar (``snapshot-N``, ``delta-M-N``, the fixed :data:`PACK_FILES`):
:func:`parse_pack_name` and :func:`check_pack_file` are what a client applies to names a hub sends.
"""

from __future__ import annotations

import json
import os
import re
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
from outpost.fsutil import fsync_dir
from outpost.hashing import sha256_file
from outpost.names import is_valid_name, shown
from outpost.packs.signing import public_key_text, sign, verify
from outpost.records import Adapter, Changeset, Chunk, DocumentRecord, EmbeddingIdentity, EncoderRef, Revectors

__all__ = [
    "DATA_FILES",
    "FORMAT_ENCODER",
    "FORMAT_VERSION",
    "MANIFEST_FILES",
    "PACK_FILES",
    "check_manifest",
    "check_pack_file",
    "load_manifest",
    "pack_name",
    "pack_versions",
    "parse_pack_name",
    "read_manifest",
    "read_pack",
    "write_pack",
]

FORMAT_VERSION = 1
FORMAT_ENCODER = 2
"""Packs that switch embedder (``vectors.parquet``) or name a query encoder: older readers refuse them by number."""
DATA_FILES = ("chunks.parquet", "documents.parquet", "deletes.parquet")
ADAPTER_FILE = "adapter.npy"
VECTORS_FILE = "vectors.parquet"
MANIFEST_FILES = ("manifest.json", "manifest.sig")
PACK_FILES = (*MANIFEST_FILES, *DATA_FILES, ADAPTER_FILE, VECTORS_FILE)  # the last two only when there is one
MAX_ENCODER_JSON_BYTES = 1 << 20
CODEC = {"type": "int8", "scheme": "symmetric-per-vector", "scale": "float32"}
MAX_VERSION = 10**12 - 1  # versions are at most 12 digits: a pack name never carries a huge number

# ASCII digits only ([0-9], never \d, which also matches other scripts' digits), no leading zeros.
_VERSION = r"[1-9][0-9]{0,11}"
_PACK_NAME = re.compile(rf"snapshot-(?P<v>{_VERSION})|delta-(?P<b>{_VERSION})-(?P<d>{_VERSION})")


def pack_name(base_version: int, version: int) -> str:
    return f"snapshot-{version}" if base_version == 0 else f"delta-{base_version}-{version}"


def pack_versions(name: object) -> tuple[int, int] | None:
    """(base, version) from a canonical pack name (the inverse of :func:`pack_name`); None for anything else.

    Canonical means exactly what :func:`pack_name` writes: ``snapshot-N`` or ``delta-M-N`` with ASCII
    digits, no leading zero, ``0 < M < N``; so one pack has one name and no name is a path.
    """
    match = _PACK_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        return None
    if match["v"] is not None:
        return 0, int(match["v"])
    base, version = int(match["b"]), int(match["d"])
    return (base, version) if base < version else None


def parse_pack_name(name: object) -> tuple[int, int]:
    """(base, version) of a pack name that came from outside; ``PackError`` unless it is canonical."""
    versions = pack_versions(name)
    if versions is None:
        raise PackError(f"Refused pack name {shown(name)}: expected snapshot-N or delta-M-N")
    return versions


def check_pack_file(name: object) -> str:
    """A pack file name from outside, if it is one of the fixed :data:`PACK_FILES`; else ``PackError``."""
    if not isinstance(name, str) or name not in PACK_FILES:
        raise PackError(f"Refused pack file name {shown(name)}: a pack holds only {', '.join(PACK_FILES)}")
    return name


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


def _revectors_table(rv: Revectors, dim: int) -> pa.Table:
    flat = pa.array(np.ascontiguousarray(rv.vectors, dtype=np.int8).reshape(-1), type=pa.int8())
    return pa.table(
        {
            "id": pa.array(rv.ids, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(flat, dim) if dim else pa.array([], pa.list_(pa.int8())),
            "scale": pa.array(np.asarray(rv.scales, dtype=np.float32), pa.float32()),
        }
    )


def _encoder_fields(cs: Changeset) -> dict[str, Any]:
    """What a format-2 manifest adds: the encoder reference and whether the pack re-vectors the collection."""
    if cs.revectors is None and cs.encoder is None:
        return {}
    return {
        "encoder": asdict(cs.encoder) if cs.encoder else None,
        "revectors": len(cs.revectors.ids) if cs.revectors is not None else None,
    }


def _manifest(cs: Changeset, folder: Path, signer: Ed25519PrivateKey) -> dict[str, Any]:
    extra = _encoder_fields(cs)
    return {
        **extra,
        "format_version": FORMAT_ENCODER if extra else FORMAT_VERSION,
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
            for name in (*DATA_FILES, ADAPTER_FILE, VECTORS_FILE)
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
    try:
        manifest = _write_files(cs, tmp, signer)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed write (a full disk) leaves no half pack behind
    fsync_dir(folder.parent)  # the rename itself survives a power loss
    return manifest


def _write_files(cs: Changeset, tmp: Path, signer: Ed25519PrivateKey) -> dict[str, Any]:
    """The pack's files in ``tmp``, each fsynced; returns the manifest."""
    pq.write_table(_chunks_table(cs), tmp / "chunks.parquet", compression="zstd")
    pq.write_table(_documents_table(cs), tmp / "documents.parquet", compression="zstd")
    pq.write_table(_deletes_table(cs), tmp / "deletes.parquet", compression="zstd")
    if cs.revectors is not None:
        dim = cs.embedding.dimension if cs.embedding else 0
        pq.write_table(_revectors_table(cs.revectors, dim), tmp / VECTORS_FILE, compression="zstd")
    if cs.adapter is not None:
        np.save(tmp / ADAPTER_FILE, np.ascontiguousarray(cs.adapter.matrix, dtype=np.float32), allow_pickle=False)
    manifest = _manifest(cs, tmp, signer)
    raw = json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8")
    (tmp / "manifest.json").write_bytes(raw)
    (tmp / "manifest.sig").write_bytes(sign(signer, raw))
    for path in tmp.iterdir():
        with path.open("rb") as fh:
            os.fsync(fh.fileno())
    return manifest


def load_manifest(folder: Path, hub_key: str, max_bytes: int = 1 << 20) -> dict[str, Any]:
    """The manifest at ``folder``, once its signature verifies against ``hub_key`` and its shape is sound.

    This needs only ``manifest.json`` and ``manifest.sig``: a client checks them before it downloads a single
    data byte, and then downloads each file up to the size the signed manifest gives it. A signature proves
    who wrote the manifest, not that the writer was well-behaved, so its shape is checked too
    (:func:`check_manifest`).
    """
    try:
        if (folder / "manifest.json").stat().st_size > max_bytes:
            raise PackError(f"Pack manifest is larger than {max_bytes} bytes: refusing the pack")
        raw = (folder / "manifest.json").read_bytes()
        signature = (folder / "manifest.sig").read_bytes()
    except FileNotFoundError as exc:
        raise PackError(f"Pack at {folder} is incomplete: {Path(exc.filename).name} is missing") from exc
    verify(hub_key, raw, signature)
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PackError("Pack manifest is signed but is not valid JSON: refusing the pack") from exc
    check_manifest(manifest)
    return manifest  # type: ignore[no-any-return]


def read_manifest(folder: Path, hub_key: str) -> dict[str, Any]:
    """Verify signature, shape and every file hash; return the manifest. Nothing is trusted before this."""
    manifest = load_manifest(folder, hub_key)
    for name, entry in manifest["files"].items():
        path = folder / name
        if not path.is_file() or path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise PackError(f"Pack file {name} does not match its manifest hash: refusing the pack")
    return manifest


def _malformed(what: str) -> PackError:
    return PackError(f"Pack manifest is malformed ({what}): refusing the pack")


def _count(value: object, what: str, low: int = 0, high: int = MAX_VERSION) -> int:
    """An integer from a manifest or plan: ``bool`` is not one, and it must lie in ``[low, high]``."""
    if type(value) is not int or not low <= value <= high:
        raise _malformed(f"{what} must be an integer from {low} to {high}, not {shown(value)}")
    return value


def _text(value: object, what: str, pattern: str | None = None) -> str:
    """A short printable string (or one matching ``pattern``) from a manifest."""
    if not isinstance(value, str) or len(value) > 1024 or not value.isprintable():
        raise _malformed(f"{what} is {shown(value)}")
    if pattern is not None and re.fullmatch(pattern, value) is None:
        raise _malformed(f"{what} is {shown(value)}")
    return value


_SHA256 = r"[0-9a-f]{64}"


def check_manifest(m: object) -> None:
    """Refuse a manifest whose fields have the wrong types, names or relations (``PackError``).

    Everything a reader later relies on is checked here once: the collection name is a safe name, versions
    are integers with ``base < version`` and ``snapshot`` exactly when ``base == 0``, the file list is the
    fixed one, every size and count is a bounded integer, every hash is a sha256.
    """
    if not isinstance(m, dict):
        raise _malformed("not a JSON object")
    if m.get("format_version") not in (FORMAT_VERSION, FORMAT_ENCODER) or type(m.get("format_version")) is not int:
        raise PackError(f"Unsupported pack format {shown(m.get('format_version'))}; upgrade Outpost")
    if not is_valid_name(m.get("collection")):
        raise _malformed(f"collection name {shown(m.get('collection'))}")
    base = _count(m.get("base_version"), "base_version")
    version = _count(m.get("version"), "version", 1)
    if base >= version or m.get("snapshot") is not (base == 0):
        raise _malformed(f"base {base}, version {version}, snapshot {shown(m.get('snapshot'))}")
    _check_embedding(m.get("embedding"), m.get("vector_codec"))
    _text(m.get("chunker_id"), "chunker_id")
    _check_adapter(m.get("adapter"))
    counts = m.get("counts")
    if not isinstance(counts, dict) or set(counts) != {"chunks", "documents", "delete_chunks", "delete_documents"}:
        raise _malformed(f"counts {shown(counts)}")
    for key, value in counts.items():
        _count(value, f"counts.{key}", 0, 10**10)
    files = m.get("files")
    revectors = _check_encoder(m)
    expected = (
        set(DATA_FILES) | ({ADAPTER_FILE} if m.get("adapter") else set()) | ({VECTORS_FILE} if revectors else set())
    )
    if not isinstance(files, dict) or set(files) != expected:
        raise PackError(
            f"Pack lists unexpected files: {shown(sorted(map(str, files)) if isinstance(files, dict) else files)}"
        )
    for name, entry in files.items():
        if not isinstance(entry, dict) or set(entry) != {"sha256", "bytes"}:
            raise _malformed(f"entry for {name}")
        _text(entry["sha256"], f"sha256 of {name}", _SHA256)
        _count(entry["bytes"], f"size of {name}", 0, 1 << 50)


def _check_embedding(embedding: object, codec: object) -> None:
    if not isinstance(codec, dict) or {k: codec.get(k) for k in CODEC} != CODEC:
        raise _malformed(f"vector_codec {shown(codec)}")
    dim = _count(codec.get("dimension"), "vector_codec.dimension", 0, 65536)
    if embedding is None:
        return
    fields = {"name", "weights_sha256", "dimension", "max_seq_length", "normalized"}
    if not isinstance(embedding, dict) or set(embedding) != fields:
        raise _malformed(f"embedding {shown(embedding)}")
    _text(embedding["name"], "embedding.name")
    _text(embedding["weights_sha256"], "embedding.weights_sha256")
    _count(embedding["max_seq_length"], "embedding.max_seq_length", 0, 1 << 20)
    if (
        _count(embedding["dimension"], "embedding.dimension", 1, 65536) != dim
        or type(embedding["normalized"]) is not bool
    ):
        raise _malformed(f"embedding {shown(embedding)} against vector dimension {dim}")


def _check_encoder(m: dict[str, Any]) -> bool:
    """The format-2 fields: an encoder named by the identity's own hash; whether ``vectors.parquet`` comes with."""
    if m["format_version"] == FORMAT_VERSION:
        if "encoder" in m or "revectors" in m:
            raise _malformed("format 1 names no encoder")
        return False
    encoder, revectors = m.get("encoder"), m.get("revectors")
    if encoder is not None:
        if not isinstance(encoder, dict) or set(encoder) != {"sha256", "bytes"}:
            raise _malformed(f"encoder {shown(encoder)}")
        _text(encoder["sha256"], "encoder.sha256", _SHA256)
        _count(encoder["bytes"], "encoder.bytes", 1, MAX_ENCODER_JSON_BYTES)
        embedding = m.get("embedding")
        if not isinstance(embedding, dict) or embedding.get("weights_sha256") != encoder["sha256"]:
            raise _malformed("the encoder is not the one the embedding identity names")
    if revectors is not None:
        _count(revectors, "revectors", 0, 10**10)
        if m.get("embedding") is None:
            raise _malformed("new vectors without an embedding identity")
    if encoder is None and revectors is None:
        raise _malformed("format 2 names neither an encoder nor new vectors")
    return revectors is not None


def _check_adapter(adapter: object) -> None:
    if adapter is None:
        return
    if (
        not isinstance(adapter, dict)
        or set(adapter) != {"version", "sha256", "file"}
        or adapter["file"] != ADAPTER_FILE
    ):
        raise _malformed(f"adapter {shown(adapter)}")
    _count(adapter["version"], "adapter.version")
    _text(adapter["sha256"], "adapter.sha256", _SHA256)


# What each table must look like; a signed pack with another schema is refused before a row is used.
_CHUNK_COLUMNS = {
    "id": pa.string(),
    "doc_key": pa.string(),
    "ordinal": pa.int32(),
    "page": pa.int32(),
    "heading": pa.string(),
    "text": pa.string(),
    "token_count": pa.int32(),
    "scale": pa.float32(),
}
_DOCUMENT_COLUMNS = {
    "key": pa.string(),
    "sha256": pa.string(),
    "title": pa.string(),
    "kind": pa.string(),
    "size": pa.int64(),
    "chunk_count": pa.int32(),
}
_DELETE_COLUMNS = {"kind": pa.string(), "id": pa.string()}
_REVECTOR_COLUMNS = {"id": pa.string(), "scale": pa.float32()}
# The chunks table's columns that become Chunk fields (read column by column: twice as fast as row dicts)
_CHUNK_FIELDS = ("id", "doc_key", "ordinal", "text", "page", "heading", "token_count")
_NULLABLE = {"page"}


def _read_table(path: Path, columns: dict[str, pa.DataType], rows: int, dim: int | None = None) -> pa.Table:
    """Read one Parquet file, refusing another row count (read from the footer, before any data) or schema."""
    try:
        declared = pq.ParquetFile(path).metadata.num_rows
        if declared != rows:
            raise PackError(f"Pack file {path.name} holds {declared} rows, its manifest says {rows}: refusing the pack")
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise PackError(f"Pack file {path.name} is not readable Parquet ({exc}): refusing the pack") from exc
    names = set(columns) | ({"vector"} if dim is not None else set())
    if set(table.schema.names) != names or len(table.schema.names) != len(names):
        raise PackError(f"Pack file {path.name} has columns {shown(table.schema.names)}: refusing the pack")
    for name, kind in columns.items():
        column = table.column(name)
        if column.type != kind or (name not in _NULLABLE and column.null_count):
            nulls = f" with {column.null_count} nulls" if column.null_count else ""
            raise PackError(f"Pack file {path.name}: column {name} is {column.type}{nulls}: refusing the pack")
    if dim is not None and table.num_rows:
        kind = table.column("vector").type
        if kind != pa.list_(pa.int8(), dim) or table.column("vector").null_count:
            raise PackError(f"Pack file {path.name}: vectors are {kind}, expected {dim} int8: refusing the pack")
    return table


def _vectors(table: pa.Table, dim: int) -> np.ndarray:
    if table.num_rows == 0:
        return np.zeros((0, dim), dtype=np.int8)
    column = table.column("vector").combine_chunks()
    return np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.int8).reshape(-1, dim)


def _read_adapter(folder: Path, entry: dict[str, Any], dim: int) -> Adapter:
    try:
        matrix = np.load(folder / ADAPTER_FILE, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise PackError(f"Pack adapter is not a plain .npy matrix ({exc}): refusing the pack") from exc
    adapter = Adapter(int(entry["version"]), matrix)
    if (
        matrix.dtype != np.float32
        or matrix.shape != (dim, dim)
        or not np.isfinite(matrix).all()
        or adapter.sha256() != entry["sha256"]
    ):
        raise PackError("Pack adapter does not match its manifest: refusing the pack")
    return adapter


def _read_revectors(folder: Path, rows: int, dim: int) -> Revectors:
    table = _read_table(folder / VECTORS_FILE, _REVECTOR_COLUMNS, rows, dim)
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        raise PackError("Pack re-vectors one chunk id twice: refusing the pack")
    return Revectors(ids, _vectors(table, dim), table.column("scale").to_numpy().astype(np.float32))


def read_pack(folder: Path, hub_key: str) -> tuple[dict[str, Any], Changeset]:
    """A verified pack as (manifest, Changeset); anything malformed is a ``PackError``, never a crash."""
    m = read_manifest(folder, hub_key)
    dim = m["vector_codec"]["dimension"]
    counts = m["counts"]
    chunks = _read_table(folder / "chunks.parquet", _CHUNK_COLUMNS, counts["chunks"], dim)
    docs = _read_table(folder / "documents.parquet", _DOCUMENT_COLUMNS, counts["documents"]).to_pylist()
    deletes = _read_table(
        folder / "deletes.parquet", _DELETE_COLUMNS, counts["delete_chunks"] + counts["delete_documents"]
    ).to_pylist()
    delete_chunks = [d["id"] for d in deletes if d["kind"] == "chunk"]
    delete_documents = [d["id"] for d in deletes if d["kind"] == "document"]
    if (len(delete_chunks), len(delete_documents)) != (counts["delete_chunks"], counts["delete_documents"]):
        raise PackError("Pack deletes differ from its manifest counts: refusing the pack")
    columns = {name: chunks.column(name).to_pylist() for name in _CHUNK_FIELDS}
    if len(set(columns["id"])) != chunks.num_rows:
        raise PackError("Pack upserts one chunk id twice: refusing the pack")
    cs = Changeset(
        collection=m["collection"],
        base_version=m["base_version"],
        version=m["version"],
        snapshot=m["snapshot"],
        upserts=[
            Chunk(id=i, doc_key=d, ordinal=o, text=t, page=p, heading=h, token_count=n)
            for i, d, o, t, p, h, n in zip(*(columns[name] for name in _CHUNK_FIELDS))
        ],
        vectors=_vectors(chunks, dim),
        scales=chunks.column("scale").to_numpy().astype(np.float32),
        documents=[DocumentRecord(**d) for d in docs],
        delete_chunks=delete_chunks,
        delete_documents=delete_documents,
        embedding=EmbeddingIdentity(**m["embedding"]) if m["embedding"] else None,
        chunker_id=m["chunker_id"],
        adapter=_read_adapter(folder, m["adapter"], dim) if m["adapter"] else None,
        revectors=_read_revectors(folder, m["revectors"], dim) if m.get("revectors") is not None else None,
        encoder=EncoderRef(**m["encoder"]) if m.get("encoder") else None,
    )
    return m, cs
