"""A hostile hub for the sync security tests: a real HTTP server on 127.0.0.1 that answers what a test scripts.

The attacker is either on the network path (plain HTTP, or a hub that never had the signing key: it can send
any plan, any bytes, any redirect, but cannot sign) or the hub itself, compromised along with its key (it can
sign anything). Its packs start as real packs from a real hub — written by ``write_pack`` and signed by
``sign`` — and are then corrupted, re-signed or forged here, so every byte the client sees is one an attacker
could really send. Nothing is mocked: the client under test is the real ``sync_hub`` over real sockets.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from outpost.hashing import sha256_file
from outpost.packs.format import PACK_FILES, pack_name, write_pack
from outpost.packs.signing import sign
from outpost.records import Changeset
from outpost.store.lock import LOCK_NAME

Reply = tuple[int, list[tuple[str, str]], Iterable[bytes]]
Responder = Callable[[dict[str, Any]], Reply]


def json_reply(value: Any, status: int = 200) -> Responder:
    body = json.dumps(value).encode()
    return lambda _: (status, [("content-type", "application/json")], [body])


def raw_reply(body: bytes, status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> Responder:
    return lambda _: (status, [("content-type", "application/octet-stream"), *headers], [body])


def stream_reply(chunks: Callable[[], Iterable[bytes]], headers: Iterable[tuple[str, str]] = ()) -> Responder:
    """A chunked body (no Content-Length): the server decides how much to send, not any announced size."""
    return lambda _: (200, [("content-type", "application/octet-stream"), *headers], chunks())


def redirect(location: str, status: int = 302) -> Responder:
    return lambda _: (status, [("location", location)], [b""])


class ScriptedHub:
    """An ASGI app that answers each path with the responder a test put in ``routes`` (404 otherwise) and
    records every request line it was asked, so a test can prove a client never went somewhere."""

    def __init__(self) -> None:
        self.routes: dict[str, Responder] = {}
        self.requests: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        query = scope.get("query_string", b"").decode("latin-1")
        self.requests.append(scope["path"] + (f"?{query}" if query else ""))
        responder = self.routes.get(scope["path"])
        status, headers, chunks = responder(scope) if responder else (404, [], [b'{"detail": "no"}'])
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers],
            }
        )
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)  # let a disconnect be noticed between chunks
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class Pack:
    """A pack as bytes in memory: what the hostile hub serves under ``name``."""

    name: str
    files: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> Pack:
        return cls(folder.name, {f: (folder / f).read_bytes() for f in PACK_FILES if (folder / f).is_file()})

    def manifest(self) -> dict[str, Any]:
        return json.loads(self.files["manifest.json"])

    def plan(self, collection: str = "docs") -> dict[str, Any]:
        """The plan an honest hub would send for this pack: names and sizes, and the ``url`` older hubs sent (a
        client must ignore it; keeping it here also lets this suite run against a client that did not)."""
        base, _, version = self.name.removeprefix("delta-").removeprefix("snapshot-").rpartition("-")
        return {
            "collection": collection,
            "version": int(version),
            "pack": {
                "name": self.name,
                "base_version": int(base or 0),
                "version": int(version),
                "snapshot": not base,
                "files": {f: len(data) for f, data in self.files.items()},
                "url": f"/v1/collections/{collection}/packs/{self.name}",  # as hubs before DESIGN §11 sent it
            },
        }

    def routes(self, collection: str = "docs", as_name: str | None = None) -> dict[str, Responder]:
        """Each file under ``/v1/collections/<collection>/packs/<as_name>/<file>``."""
        base = f"/v1/collections/{collection}/packs/{as_name or self.name}"
        return {f"{base}/{f}": raw_reply(data) for f, data in self.files.items()}

    def renamed(self, name: str) -> Pack:
        return Pack(name, dict(self.files))


def resign(pack: Pack, key: Ed25519PrivateKey, edit: Callable[[dict[str, Any]], None] | None = None) -> Pack:
    """``pack`` with its manifest edited (or re-serialised as is) and signed again by ``key``."""
    manifest = pack.manifest()
    if edit:
        edit(manifest)
    return with_manifest_bytes(pack, key, json.dumps(manifest, indent=2, sort_keys=True).encode())


def with_manifest_bytes(pack: Pack, key: Ed25519PrivateKey, raw: bytes) -> Pack:
    """``pack`` with exactly these manifest bytes, validly signed by ``key``."""
    files = dict(pack.files)
    files["manifest.json"], files["manifest.sig"] = raw, sign(key, raw)
    return Pack(pack.name, files)


def rewrite(pack: Pack, key: Ed25519PrivateKey, name: str, data: bytes) -> Pack:
    """A compromised hub's forgery: ``name`` replaced by ``data``, the manifest's hash and size updated to
    match, and everything signed with the real key (so only the client's content checks stand in the way)."""
    import hashlib

    files = dict(pack.files)
    files[name] = data

    def edit(manifest: dict[str, Any]) -> None:
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}

    return resign(Pack(pack.name, files), key, edit)


def forge(changeset: Changeset, key: Ed25519PrivateKey, scratch: Path) -> Pack:
    """A pack written by the real pack writer from a changeset of the attacker's choosing."""
    folder = scratch / f"forged-{changeset.base_version}-{changeset.version}-{id(changeset)}"
    write_pack(changeset, folder, key)
    pack = Pack.load(folder)
    shutil.rmtree(folder)
    return Pack(pack_name(changeset.base_version, changeset.version), pack.files)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def read_parquet(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def edited_plan(plan: dict[str, Any], edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """A deep copy of ``plan`` changed by ``edit`` (which may also return a whole new value to send)."""
    changed = copy.deepcopy(plan)
    result = edit(changed)
    return changed if result is None else result


def file_tree(root: Path, skip: Path) -> dict[str, str]:
    """Every path under ``root`` but ``skip`` (the staging folder) → what it is: a folder, a link and its
    target, or a file's sha256. SQLite's transient ``-wal``/``-shm`` files are left out (they come and go
    with every connection), and so is the collection's write-lock file (an empty ``flock`` target every writer
    creates); the database files themselves are compared byte for byte."""
    import os

    tree: dict[str, str] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        if here == skip or skip in here.parents:
            dirs[:] = []
            continue
        for name in dirs + files:
            path = here / name
            key = str(path.relative_to(root))
            if path == skip or name.endswith(("-wal", "-shm")) or name == LOCK_NAME:
                continue
            if path.is_symlink():
                tree[key] = f"link -> {os.readlink(path)}"
            elif path.is_dir():
                tree[key] = "folder"
            else:
                tree[key] = sha256_file(path)
    return tree
