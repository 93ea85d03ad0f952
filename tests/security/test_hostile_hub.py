"""Hub → laptop: `outpost sync` against a hostile hub (docs/security.md, "Hub → laptop (sync)").

One real hub (real embedder, real packs, real signing key) publishes versions 1–3 of a collection; a laptop
is at version 1. A scripted hub on 127.0.0.1 (``hostile_hub_server.ScriptedHub`` under uvicorn) then plays
the attacker: it answers the laptop's real ``sync_hub`` with traversal names, absolute paths, URLs and
redirects to another host, oversize and truncated files, wrong hashes, bad or foreign signatures, replayed
and reordered versions, a delta on another base, a changed key, another embedding model, malformed JSON and
plans with wrong types, and packs signed with the real key but built to break the reader.

Every case asserts the same four things: the sync is refused with a clear error (its message matches what
the case is about, so a refusal for an unrelated reason does not pass), the local collection is unchanged
(version, rows, BM25 and vector search results), nothing outside the staging folder changed (the whole
test folder, a sentinel folder next to the home included, is compared file by file), and no request went
to the "elsewhere" server that plans and redirects point at. A control case first shows the same harness
syncing an honest pack, so the refusals are the checks at work and not a broken harness.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hubkit import ServerThread
from outpost.errors import OutpostError
from outpost.feedback import FeedbackQueue
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.hubs import HubConfig, hub_name, load_hubs, save_hub
from outpost.ingest import Chunker
from outpost.packs import public_key_text, read_pack
from outpost.records import Adapter, Changeset
from outpost.store import Store
from outpost.sync import SyncReport, sync_hub

from .hostile_hub_server import (
    Pack,
    Responder,
    ScriptedHub,
    edited_plan,
    file_tree,
    forge,
    json_reply,
    parquet_bytes,
    raw_reply,
    read_parquet,
    redirect,
    resign,
    rewrite,
    stream_reply,
    with_manifest_bytes,
)

CAP = 1 << 20  # max_pack_bytes for these tests: far above the real files (a few kB), so only attacks reach it
PLAN = "/v1/collections/docs/sync"
OUTSIDE = Path("/tmp/outpost-hostile-hub-pwned")  # an absolute path outside the test folder, checked by name
QUERIES = ["alpha launch date", "who is on call", "budget risks", "coffee machine"]

DOCS = {
    1: {
        "alpha.md": "# Alpha\n\nThe alpha project launches on 3 March.\n\n## Risks\n\nBudget risks are low.\n",
        "oncall.txt": "On call this week: Ada. Escalate to Grace after one hour.\n",
        "coffee.txt": "The coffee machine is descaled every Friday.\n",
    },
    2: {"beta.md": "# Beta\n\nBeta slips to September because of budget risks.\n"},
    3: {"gamma.md": "# Gamma\n\nGamma is a new research track on retrieval.\n"},
}


@dataclass
class World:
    """What every case shares (built once per module): the real hub's packs and keys, the two servers,
    and the laptop's home at version 1 that each case copies."""

    scratch: Path
    key: Ed25519PrivateKey
    public_key: str
    attacker: Ed25519PrivateKey
    packs: dict[str, Pack]
    changesets: dict[str, Changeset]
    hub: ScriptedHub
    url: str
    elsewhere: ScriptedHub
    elsewhere_url: str
    template: Path
    expected: tuple[Any, ...]

    def honest(self) -> dict[str, Responder]:
        delta = self.packs["delta-1-2"]
        return {
            "/v1/hub": json_reply({"public_key": self.public_key, "version": "x", "token": "t"}),
            "/v1/collections": json_reply([{"name": "docs", "version": 2}]),
            PLAN: json_reply(delta.plan()),
            **delta.routes(),
        }


@dataclass
class Ctx:
    """Per case: the laptop's home (a fresh copy) and a sentinel folder beside it that attacks aim at."""

    home: Path
    sentinel: Path

    def fill(self, text: str) -> str:
        return text.replace("{sentinel}", str(self.sentinel)).replace("{outside}", str(OUTSIDE))


def local_view(home: Path) -> tuple[Any, ...]:
    """Version, every row, and what BM25 and vector search answer: what "local data intact" means."""
    store = Store.open(home / "collections", "docs")
    try:
        rows = store.db.execute(
            "SELECT id, doc_key, ordinal, text_unpack(packed_text), vector, scale FROM chunks ORDER BY id"
        ).fetchall()
        docs = store.db.execute("SELECT key, sha256 FROM documents ORDER BY key").fetchall()
        probe = np.frombuffer(rows[0][4], dtype=np.int8)
        return (
            store.version,
            [tuple(r) for r in rows],
            [tuple(d) for d in docs],
            [store.bm25(q, 3) for q in QUERIES],
            store.dense(probe, 3),
        )
    finally:
        store.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, embedder) -> World:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("hostile-hub")
    hub_home = HubHome.at(root / "hub-home")
    public_key = hub_home.init()
    hub = Hub(hub_home)
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    docs = root / "docs"
    docs.mkdir()
    packs: dict[str, Pack] = {}
    for version, files in DOCS.items():
        for name, text in files.items():
            (docs / name).write_text(text)
        if version == 2:
            (docs / "coffee.txt").unlink()
        assert hub.ingest([docs], "docs", embedder, chunker, sync=True).version == version
        if version == 2:
            packs["snapshot-2"] = Pack.load(hub.pack_for("docs", 0))
    folder = hub_home.packs_dir / "docs"
    for name in ("snapshot-1", "delta-1-2", "delta-2-3"):
        packs[name] = Pack.load(folder / name)
    changesets = {name: read_pack(folder / name, public_key)[1] for name in ("snapshot-1", "delta-1-2", "delta-2-3")}
    scripted, elsewhere = ScriptedHub(), ScriptedHub()
    with ServerThread(scripted) as server, ServerThread(elsewhere) as other:
        template = root / "laptop"
        store = Store.open(template / "collections", "docs", create=True)
        store.set_meta(hub=server.url)
        store.apply(changesets["snapshot-1"])
        store.close()
        save_hub(template, HubConfig(hub_name(server.url), server.url, "laptop-token", public_key))
        FeedbackQueue(template).close()
        yield World(
            root / "scratch",
            hub_home.signing_key,
            public_key,
            Ed25519PrivateKey.generate(),
            packs,
            changesets,
            scripted,
            server.url,
            elsewhere,
            other.url,
            template,
            local_view(template),
        )


def attempt(world: World, tmp_path: Path, build: Callable[[World, Ctx], dict[str, Responder]]) -> dict[str, Any]:
    """Run one real sync against the scripted hub; return what happened, and the file trees around it."""
    home = tmp_path / "home"
    shutil.copytree(world.template, home)
    ctx = Ctx(home, tmp_path / "sentinel")
    ctx.sentinel.mkdir()
    (ctx.sentinel / "keep.txt").write_text("the user's own file")
    world.scratch.mkdir(exist_ok=True)
    world.hub.routes = {**world.honest(), **build(world, ctx)}
    world.elsewhere.requests.clear()
    staging = home / "staging"
    before = file_tree(tmp_path, staging)
    report: SyncReport | None = None
    try:
        report = sync_hub(home, load_hubs(home)[0], max_pack_bytes=CAP)
        message = report.failed.get("docs", "")
    except OutpostError as exc:
        message = str(exc)
    return {"home": home, "report": report, "message": message, "before": before, "after": file_tree(tmp_path, staging)}


def test_control_the_honest_pack_syncs_through_the_same_harness(world: World, tmp_path: Path) -> None:
    result = attempt(world, tmp_path, lambda w, ctx: {})
    assert result["message"] == "" and result["report"].updated == {"docs": (1, 2, "delta-1-2")}
    assert local_view(result["home"])[0] == 2
    assert not (result["home"] / "staging" / hub_name(world.url) / "docs").exists()  # staging cleaned


# -- the cases -------------------------------------------------------------------------------------------------

Build = Callable[[World, Ctx], dict[str, Responder]]
CASES: list[Any] = []


def case(id_: str, expect: str) -> Callable[[Build], Build]:
    def register(build: Build) -> Build:
        CASES.append(pytest.param(build, expect, id=id_))
        return build

    return register


def plan_case(id_: str, expect: str, edit: Callable[[dict[str, Any], Ctx], Any]) -> None:
    """A case that only changes the honest plan (the pack's files stay served under their honest paths)."""

    def build(w: World, ctx: Ctx) -> dict[str, Responder]:
        return {PLAN: json_reply(edited_plan(w.packs["delta-1-2"].plan(), lambda p: edit(p, ctx)))}

    CASES.append(pytest.param(build, expect, id=id_))


# Pack names: each becomes the plan's pack name, and the honest files are served under it as well, so a
# client that used the name would find something to write.
BAD_PACK_NAMES = {
    "dotdot": "..",
    "dot": ".",
    "empty": "",
    "parent-of-pack": "../delta-1-2",
    "to-sentinel": "../../../../sentinel",
    "into-sentinel-file": "../../../../sentinel/keep.txt",
    "absolute-sentinel": "{sentinel}",
    "absolute-outside": "{outside}",
    "absolute-system-like": "{outside}/etc",  # never a real system path: a regression must not harm the machine
    "nested-traversal": "delta-1-2/../../../../sentinel",
    "url-encoded-slash": "..%2f..%2f..%2f..%2fsentinel",
    "url-encoded-dots": "%2e%2e",
    "double-encoded": "..%252f..%252fsentinel",
    "backslashes": "..\\..\\..\\..\\sentinel",
    "pack-then-backslash": "delta-1-2\\..\\..\\x",
    "windows-drive": "C:\\evil",
    "nul-suffix": "delta-1-2\x00",
    "nul-then-path": "delta-1-2\x00/../../x",
    "nul-only": "\x00",
    "newline-suffix": "delta-1-2\n",
    "leading-space": " delta-1-2",
    "trailing-space": "delta-1-2 ",
    "trailing-dot": "delta-1-2.",
    "trailing-slash": "delta-1-2/",
    "subpath": "delta-1-2/manifest.json",
    "very-long": "delta-1-2" + "x" * 5000,
    "long-digits": "delta-1-" + "2" * 200,
    "uppercase": "DELTA-1-2",
    "leading-zero-base": "delta-01-2",
    "leading-zero-version": "delta-1-02",
    "fullwidth-digit": "delta-1-\uff12",
    "arabic-indic-digit": "delta-\u0661-2",
    "cyrillic-e": "d\u0435lta-1-2",
    "unicode-hyphen": "delta\u20101\u20102",
    "rtl-override": "delta-1-2\u202e",
    "zero-width-space": "delta-1-2\u200b",
    "double-dash": "delta--1-2",
    "base-after-version": "delta-2-1",
    "base-equals-version": "delta-1-1",
    "snapshot-zero": "snapshot-0",
    "snapshot-negative": "snapshot--2",
    "snapshot-dotdot": "snapshot-2/..",
    "home-tilde": "~/.ssh",
    "env-var": "$HOME",
    "file-url": "file://{outside}/etc/passwd",
    "http-url": "http://127.0.0.1:1/x",
    "extra-part": "delta-1-2-3",
}
for _id, _name in BAD_PACK_NAMES.items():

    def _build(w: World, ctx: Ctx, name: str = _name) -> dict[str, Responder]:
        name = ctx.fill(name)
        plan = edited_plan(w.packs["delta-1-2"].plan(), lambda p: p["pack"].update(name=name))
        return {PLAN: json_reply(plan), **w.packs["delta-1-2"].routes(as_name=name)}

    CASES.append(pytest.param(_build, r"Refused pack name", id=f"pack-name-{_id}"))

for _id, _value in {"null": None, "number": 12, "list": ["delta-1-2"], "object": {"a": 1}, "bool": True}.items():
    plan_case(f"pack-name-type-{_id}", r"Refused pack name", lambda p, ctx, v=_value: p["pack"].update(name=v))

# File names: an extra entry in the plan's file list (the honest ones stay), served with real bytes.
BAD_FILE_NAMES = {
    "parent": "../manifest.json",
    "to-sentinel": "../../../../../sentinel/pwned",
    "absolute-sentinel": "{sentinel}/pwned",
    "absolute-outside": "{outside}",
    "absolute-system-like": "{outside}/etc/passwd",
    "nested": "manifest.json/../../x",
    "url-encoded": "..%2fchunks.parquet",
    "nul-suffix": "chunks.parquet\x00",
    "backslashes": "..\\..\\pwned",
    "dotfile": ".bashrc",
    "script": "evil.sh",
    "uppercase": "CHUNKS.PARQUET",
    "trailing-space": "chunks.parquet ",
    "fullwidth-m": "\uff4danifest.json",
    "newline": "manifest.json\n",
    "very-long": "a" * 5000,
    "empty": "",
    "dot": ".",
    "dotdot": "..",
    "trailing-slash": "chunks.parquet/",
    "tilde": "~/.profile",
    "part-file": "manifest.sig.part",
}
for _id, _name in BAD_FILE_NAMES.items():

    def _build(w: World, ctx: Ctx, name: str = _name) -> dict[str, Responder]:
        name = ctx.fill(name)
        plan = edited_plan(w.packs["delta-1-2"].plan(), lambda p: p["pack"]["files"].update({name: 5}))
        return {PLAN: json_reply(plan), f"/v1/collections/docs/packs/delta-1-2/{name}": raw_reply(b"pwned")}

    CASES.append(pytest.param(_build, r"Refused pack file name", id=f"file-name-{_id}"))

for _id, _value in {"list": ["manifest.json"], "string": "manifest.json", "null": None, "number": 5}.items():
    plan_case(f"files-type-{_id}", r"files are", lambda p, ctx, v=_value: p["pack"].update(files=v))
for _missing in ("manifest.json", "manifest.sig"):
    plan_case(f"files-missing-{_missing}", r"files are", lambda p, ctx, m=_missing: p["pack"]["files"].pop(m) and None)

# Sizes announced in the plan.
SIZES = {
    "negative": (-1, r"size of chunks.parquet must be an integer"),
    "bool": (True, r"size of chunks.parquet must be an integer"),
    "float": (1.5, r"size of chunks.parquet must be an integer"),
    "string": ("100", r"size of chunks.parquet must be an integer"),
    "null": (None, r"size of chunks.parquet must be an integer"),
    "list": ([1], r"size of chunks.parquet must be an integer"),
    "huge": (10**20, r"over the \d+-byte limit"),
    "over-cap": (CAP + 1, r"over the \d+-byte limit \(max_pack_bytes\)"),
}
for _id, (_size, _expect) in SIZES.items():
    plan_case(f"size-{_id}", _expect, lambda p, ctx, s=_size: p["pack"]["files"].update({"chunks.parquet": s}))
plan_case(
    "size-manifest-over-1MiB",
    r"over the 1048576-byte limit",
    lambda p, c: p["pack"]["files"].update({"manifest.json": 2**20 + 1}),
)
plan_case(
    "size-signature-over-1KiB",
    r"over the 1024-byte limit",
    lambda p, c: p["pack"]["files"].update({"manifest.sig": 1025}),
)
plan_case(
    "size-plan-disagrees-with-signed-manifest",
    r"announces other files or sizes than its signed manifest",
    lambda p, c: p["pack"]["files"].update({"chunks.parquet": p["pack"]["files"]["chunks.parquet"] + 1}),
)

# The plan's shape and versions.
PLANS: dict[str, tuple[Callable[[dict[str, Any], Ctx], Any], str]] = {
    "not-an-object-list": (lambda p, c: [p], r"not a plan for this collection"),
    "not-an-object-string": (lambda p, c: "delta-1-2", r"not a plan for this collection"),
    "not-an-object-number": (lambda p, c: 5, r"not a plan for this collection"),
    "other-collection": (lambda p, c: p.update(collection="secret"), r"not a plan for this collection"),
    "traversal-collection": (lambda p, c: p.update(collection="../docs"), r"not a plan for this collection"),
    "version-string": (lambda p, c: p.update(version="2"), r"version must be an integer"),
    "version-float": (lambda p, c: p.update(version=2.0), r"version must be an integer"),
    "version-bool": (lambda p, c: p.update(version=True), r"version must be an integer"),
    "version-negative": (lambda p, c: p.update(version=-1), r"version must be an integer"),
    "version-huge": (lambda p, c: p.update(version=10**15), r"version must be an integer"),
    "version-null": (lambda p, c: p.update(version=None), r"version must be an integer"),
    "replay-same-version": (lambda p, c: p.update(version=1), r"not newer than local 1"),
    "replay-older-version": (lambda p, c: p.update(version=0), r"not newer than local 1"),
    "plan-version-differs-from-pack-name": (lambda p, c: p.update(version=3), r"does not match the plan's versions"),
    "pack-version-field-differs": (lambda p, c: p["pack"].update(version=3), r"does not match the plan's versions"),
    "pack-base-field-differs": (lambda p, c: p["pack"].update(base_version=0), r"does not match the plan's versions"),
    "pack-snapshot-flag-differs": (lambda p, c: p["pack"].update(snapshot=True), r"does not match the plan's versions"),
    "pack-not-an-object": (lambda p, c: p.update(pack=["delta-1-2"]), r"pack is"),
    "no-pack-but-newer-version": (lambda p, c: p.update(pack=None), r"no pack, but version 2"),
    "delta-on-another-base": (
        lambda p, c: p.update(version=3) or p["pack"].update(name="delta-2-3", base_version=2, version=3),
        r"delta from version 2 of 'docs', but local is at 1",
    ),
    "delta-from-the-future": (
        lambda p, c: p.update(version=9) or p["pack"].update(name="delta-5-9", base_version=5, version=9),
        r"delta from version 5",
    ),
}
for _id, (_edit, _expect) in PLANS.items():
    plan_case(f"plan-{_id}", _expect, _edit)


@case(
    "plan-url-points-elsewhere-and-is-ignored", r"answered 404 for /v1/collections/docs/packs/delta-1-2/manifest.json"
)
def _url_elsewhere(w: World, ctx: Ctx) -> dict[str, Responder]:
    """The plan carries a URL to another host that serves the real pack; the client must not use it (it builds
    its own from the name), so it asks the canonical path, which this hub answers with 404."""
    delta = w.packs["delta-1-2"]
    w.elsewhere.routes = delta.routes()
    plan = edited_plan(
        delta.plan(), lambda p: p["pack"].update(url=f"{w.elsewhere_url}/v1/collections/docs/packs/delta-1-2")
    )
    return {PLAN: json_reply(plan), **{path: json_reply({"detail": "no"}, 404) for path in delta.routes()}}


# The collection list and the hub's key.
LISTINGS: dict[str, tuple[Any, str]] = {
    "object": ({"name": "docs"}, r"collection list is refused"),
    "string": ("docs", r"collection list is refused"),
    "null": (None, r"collection list is refused"),
    "name-traversal": ([{"name": "../docs", "version": 2}], r"invalid collection name"),
    "name-absolute": ([{"name": "{sentinel}", "version": 2}], r"invalid collection name"),
    "name-too-long": ([{"name": "d" * 129, "version": 2}], r"invalid collection name"),  # DESIGN §11: 128 at most
    "name-nul": ([{"name": "docs\x00", "version": 2}], r"invalid collection name"),
    "name-dotdot": ([{"name": "..", "version": 2}], r"invalid collection name"),
    "name-number": ([{"name": 5, "version": 2}], r"invalid collection name"),
    "entry-not-object": (["docs"], r"invalid collection name"),
    "version-missing": ([{"name": "docs"}], r"with version None"),
    "version-string": ([{"name": "docs", "version": "2"}], r"with version '2'"),
    "duplicate-names": ([{"name": "docs", "version": 2}, {"name": "docs", "version": 3}], r"listed collection"),
}
for _id, (_value, _expect) in LISTINGS.items():

    def _build(w: World, ctx: Ctx, value: Any = _value) -> dict[str, Responder]:
        return {"/v1/collections": json_reply(json.loads(ctx.fill(json.dumps(value))))}

    CASES.append(pytest.param(_build, _expect, id=f"listing-{_id}"))

KEYS: dict[str, tuple[Callable[[World], Any], str]] = {
    "changed-key": (lambda w: {"public_key": public_key_text(w.attacker)}, r"now presents key"),
    "garbage-key": (lambda w: {"public_key": "ed25519:AAAA"}, r"Not an Ed25519 public key"),
    "key-not-a-string": (lambda w: {"public_key": 12}, r"public key is refused"),
    "key-missing": (lambda w: {}, r"public key is refused"),
    "key-huge": (lambda w: {"public_key": "ed25519:" + "A" * 10_000}, r"public key is refused"),
    "answer-not-an-object": (lambda w: [w.public_key], r"public key is refused"),
}
for _id, (_value, _expect) in KEYS.items():
    CASES.append(pytest.param(lambda w, ctx, v=_value: {"/v1/hub": json_reply(v(w))}, _expect, id=f"hub-{_id}"))


# HTTP: redirects (to another host, or this one), errors, bodies that are not JSON or too large.
def _redirect_case(id_: str, path_of: Callable[[World], str], status: int, same_host: bool = False) -> None:
    def build(w: World, ctx: Ctx) -> dict[str, Responder]:
        path = path_of(w)
        w.elsewhere.routes = {**w.honest(), **{path: w.honest()[path]}}
        target = (w.url if same_host else w.elsewhere_url) + path + ("/moved" if same_host else "")
        return {path: redirect(target, status)}

    CASES.append(pytest.param(build, rf"redirect \(HTTP {status} to .*never follows redirects", id=f"redirect-{id_}"))


_redirect_case("hub-info-302-elsewhere", lambda w: "/v1/hub", 302)
_redirect_case("listing-301-elsewhere", lambda w: "/v1/collections", 301)
_redirect_case("plan-307-elsewhere", lambda w: PLAN, 307)
_redirect_case("manifest-308-elsewhere", lambda w: "/v1/collections/docs/packs/delta-1-2/manifest.json", 308)
_redirect_case("signature-303-elsewhere", lambda w: "/v1/collections/docs/packs/delta-1-2/manifest.sig", 303)
_redirect_case("chunks-302-elsewhere", lambda w: "/v1/collections/docs/packs/delta-1-2/chunks.parquet", 302)
_redirect_case("chunks-302-same-host", lambda w: "/v1/collections/docs/packs/delta-1-2/chunks.parquet", 302, True)
_redirect_case("plan-302-same-host", lambda w: PLAN, 302, True)

BODIES: dict[str, tuple[Responder, str]] = {
    "plan-500": (json_reply({"detail": "boom"}, 500), r"answered 500"),
    "plan-500-with-escapes": (raw_reply(b"\x1b]0;owned\x07\x1b[2J" * 500, 500), r"answered 500: '\\x1b"),
    "plan-html": (raw_reply(b"<html><body>hello</body></html>"), r"not JSON"),
    "plan-truncated-json": (raw_reply(b'{"collection": "docs", "version": 2, "pack": {"na'), r"not JSON"),
    "plan-deeply-nested-json": (raw_reply(b"[" * 200_000 + b"]" * 200_000), r"not JSON"),
    "plan-over-json-cap": (stream_reply(lambda: (b" " * 65536 for _ in range(200))), r"larger than \d+ bytes"),
    "plan-nan-version": (raw_reply(b'{"collection": "docs", "version": NaN, "pack": null}'), r"must be an integer"),
    "plan-204": (raw_reply(b"", 204), r"unexpected HTTP 204"),
    "plan-null": (raw_reply(b"null"), r"not a plan for this collection"),
}
for _id, (_responder, _expect) in BODIES.items():
    CASES.append(pytest.param(lambda w, ctx, r=_responder: {PLAN: r}, _expect, id=f"http-{_id}"))


# Download content from an attacker without the key (on the path, or a hub that never had it).
def _file_case(id_: str, expect: str, make: Callable[[World], dict[str, Responder]]) -> None:
    CASES.append(pytest.param(lambda w, ctx: make(w), expect, id=f"download-{id_}"))


def _delta_file(w: World, name: str) -> bytes:
    return w.packs["delta-1-2"].files[name]


def _path(name: str) -> str:
    return f"/v1/collections/docs/packs/delta-1-2/{name}"


def _flipped(data: bytes, at: int | None = None) -> bytes:
    out = bytearray(data)
    out[len(out) // 2 if at is None else at] ^= 0xFF
    return bytes(out)


_file_case(
    "chunks-one-byte-more",
    r"more than the \d+ bytes it announced",
    lambda w: {_path("chunks.parquet"): raw_reply(_delta_file(w, "chunks.parquet") + b"x")},
)
_file_case(
    "chunks-endless-stream",
    r"more than the \d+ bytes it announced",
    lambda w: {_path("chunks.parquet"): stream_reply(lambda: (b"\0" * 65536 for _ in range(400)))},
)
_file_case(
    "manifest-one-byte-more",
    r"more than the \d+ bytes it announced",
    lambda w: {_path("manifest.json"): raw_reply(_delta_file(w, "manifest.json") + b" ")},
)
_file_case(
    "signature-endless",
    r"more than the \d+ bytes it announced",
    lambda w: {_path("manifest.sig"): stream_reply(lambda: (b"A" * 4096 for _ in range(100)))},
)
_file_case(
    "chunks-truncated",
    r"incomplete",
    lambda w: {_path("chunks.parquet"): raw_reply(_delta_file(w, "chunks.parquet")[:-10])},
)
_file_case(
    "manifest-truncated",
    r"incomplete",
    lambda w: {_path("manifest.json"): raw_reply(_delta_file(w, "manifest.json")[:-1])},
)
for _name in ("chunks.parquet", "documents.parquet", "deletes.parquet"):
    _file_case(
        f"{_name}-flipped-byte",
        rf"Pack file {re.escape(_name)} does not match its manifest hash",
        lambda w, n=_name: {_path(n): raw_reply(_flipped(_delta_file(w, n)))},
    )
_file_case(
    "chunks-gzip-encoded",
    r"does not match its manifest hash|more than the \d+ bytes|incomplete",
    lambda w: {
        _path("chunks.parquet"): raw_reply(
            gzip.compress(_delta_file(w, "chunks.parquet")), headers=[("content-encoding", "gzip")]
        )
    },
)
_file_case(
    "manifest-flipped-byte",
    r"signature is invalid",
    lambda w: {_path("manifest.json"): raw_reply(_flipped(_delta_file(w, "manifest.json"), 40))},
)


def _unsigned_manifest_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[World], dict[str, Responder]]:
    """The manifest edited by someone without the key: the old signature goes with it."""

    def make(w: World) -> dict[str, Responder]:
        pack = w.packs["delta-1-2"]
        edited = resign(pack, w.attacker, edit)
        raw = edited.files["manifest.json"]
        plan = edited_plan(pack.plan(), lambda p: p["pack"]["files"].update({"manifest.json": len(raw)}))
        return {PLAN: json_reply(plan), _path("manifest.json"): raw_reply(raw)}

    return make


_file_case(
    "manifest-counts-edited",
    r"signature is invalid",
    _unsigned_manifest_edit(lambda m: m["counts"].update(chunks=m["counts"]["chunks"] + 1)),
)
_file_case("manifest-version-edited", r"signature is invalid", _unsigned_manifest_edit(lambda m: m.update(version=3)))
_file_case(
    "manifest-hash-edited",
    r"signature is invalid",
    _unsigned_manifest_edit(lambda m: m["files"]["chunks.parquet"].update(sha256="0" * 64)),
)


def _foreign_signature(w: World) -> dict[str, Responder]:
    """Every file consistent, the manifest signed — by the attacker's key, not the pinned one."""
    pack = resign(w.packs["delta-1-2"], w.attacker)
    return {PLAN: json_reply(pack.plan()), **pack.routes()}


_file_case("signed-by-another-key", r"signature is invalid", _foreign_signature)
_file_case(
    "signature-garbage",
    r"signature is invalid",
    lambda w: {
        PLAN: json_reply(
            edited_plan(w.packs["delta-1-2"].plan(), lambda p: p["pack"]["files"].update({"manifest.sig": 9}))
        ),
        _path("manifest.sig"): raw_reply(b"!!notb64!"),
    },
)
_file_case(
    "signature-empty",
    r"signature is invalid",
    lambda w: {
        PLAN: json_reply(
            edited_plan(w.packs["delta-1-2"].plan(), lambda p: p["pack"]["files"].update({"manifest.sig": 0}))
        ),
        _path("manifest.sig"): raw_reply(b""),
    },
)
_file_case(
    "signature-of-another-pack",
    r"signature is invalid",
    lambda w: {_path("manifest.sig"): raw_reply(w.packs["snapshot-2"].files["manifest.sig"])},
)
_file_case("manifest-404", r"answered 404 for", lambda w: {_path("manifest.json"): json_reply({"detail": "gone"}, 404)})


# A compromised hub: everything signed with the real key, built to get past the signature.
def _signed(make: Callable[[World], Pack], as_name: str = "delta-1-2", version: int | None = None) -> Build:
    def build(w: World, ctx: Ctx) -> dict[str, Responder]:
        pack = make(w)
        plan = pack.renamed(as_name).plan()
        return {PLAN: json_reply(plan), **pack.routes(as_name=as_name)}

    return build


def _forged(w: World, **changes: Any) -> Pack:
    """delta-1-2 rebuilt by the real pack writer with some fields changed, signed with the real key."""
    return forge(dataclasses.replace(w.changesets["delta-1-2"], **changes), w.key, w.scratch)


def _signed_case(id_: str, expect: str, make: Callable[[World], Pack], as_name: str = "delta-1-2") -> None:
    CASES.append(pytest.param(_signed(make, as_name), expect, id=f"signed-{id_}"))


def _chunks_table(w: World) -> pa.Table:
    return read_parquet(w.packs["delta-1-2"].files["chunks.parquet"])


def _with_column(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, column)


_signed_case("replayed-snapshot-1-as-delta-1-2", r"its signed manifest is snapshot-1", lambda w: w.packs["snapshot-1"])
_signed_case("reordered-delta-2-3-as-delta-1-2", r"its signed manifest is delta-2-3", lambda w: w.packs["delta-2-3"])
_signed_case("snapshot-2-as-delta-1-2", r"its signed manifest is snapshot-2", lambda w: w.packs["snapshot-2"])
_signed_case(
    "replayed-snapshot-1-honestly-named", r"not newer than local 1", lambda w: w.packs["snapshot-1"], "snapshot-1"
)
_signed_case("delta-2-3-honestly-named", r"delta from version 2", lambda w: w.packs["delta-2-3"], "delta-2-3")
_signed_case(
    "other-collection", r"Pack is for collection 'other', not 'docs'", lambda w: _forged(w, collection="other")
)
_signed_case("version-3-named-2", r"its signed manifest is delta-1-3", lambda w: _forged(w, version=3))
_signed_case("base-5-named-1", r"its signed manifest is delta-5-6", lambda w: _forged(w, base_version=5, version=6))
_signed_case(
    "another-embedding-model",
    r"embedded with other-model .* but the local copy with",
    lambda w: _forged(w, embedding=dataclasses.replace(w.changesets["delta-1-2"].embedding, name="other-model")),
)
_signed_case(
    "another-dimension",
    r"embedded with .*dim 16.* but the local copy with",
    lambda w: _forged(
        w,
        embedding=dataclasses.replace(w.changesets["delta-1-2"].embedding, dimension=16),
        vectors=np.ones((len(w.changesets["delta-1-2"].upserts), 16), np.int8),
    ),
)
_signed_case(
    "upserts-a-chunk-it-does-not-delete",
    r"could not be applied \(UNIQUE",
    lambda w: _forged(
        w,
        upserts=[*w.changesets["delta-1-2"].upserts, w.changesets["snapshot-1"].upserts[-1]],
        vectors=np.vstack([w.changesets["delta-1-2"].vectors, w.changesets["snapshot-1"].vectors[-1:]]),
        scales=np.append(w.changesets["delta-1-2"].scales, w.changesets["snapshot-1"].scales[-1]),
        delete_chunks=[
            c for c in w.changesets["delta-1-2"].delete_chunks if c != w.changesets["snapshot-1"].upserts[-1].id
        ],
    ),
)
_signed_case(
    "adapter-wrong-shape",
    r"adapter does not match its manifest",
    lambda w: _forged(w, adapter=Adapter(1, np.eye(3, dtype=np.float32))),
)
_signed_case(
    "adapter-not-finite",
    r"adapter does not match its manifest",
    lambda w: _forged(w, adapter=Adapter(1, np.full((384, 384), np.nan, np.float32))),
)


def _pickled_adapter(w: World) -> Pack:
    pack = _forged(w, adapter=Adapter(1, np.eye(384, dtype=np.float32)))
    sink = io.BytesIO()
    np.save(sink, np.array([{"os": "system"}], dtype=object), allow_pickle=True)
    return rewrite(pack, w.key, "adapter.npy", sink.getvalue())


_signed_case("adapter-pickled", r"adapter is not a plain .npy matrix", _pickled_adapter)
_signed_case(
    "manifest-not-json",
    r"signed but is not valid JSON",
    lambda w: with_manifest_bytes(w.packs["delta-1-2"], w.key, b"{not json"),
)
_signed_case(
    "manifest-a-list",
    r"manifest is malformed \(not a JSON object\)",
    lambda w: with_manifest_bytes(w.packs["delta-1-2"], w.key, b"[]"),
)
SIGNED_MANIFESTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "lists-traversal-file": (
        lambda m: m["files"].update({"../../x": {"sha256": "0" * 64, "bytes": 1}}),
        r"unexpected files",
    ),
    "lists-absolute-file": (
        lambda m: m["files"].update({f"{OUTSIDE}/etc/passwd": {"sha256": "0" * 64, "bytes": 1}}),
        r"unexpected files",
    ),
    "version-string": (lambda m: m.update(version="2"), r"version must be an integer"),
    "base-negative": (lambda m: m.update(base_version=-1), r"base_version must be an integer"),
    "snapshot-flag-on-delta": (lambda m: m.update(snapshot=True), r"malformed \(base 1, version 2, snapshot True\)"),
    "collection-traversal": (lambda m: m.update(collection="../docs"), r"collection name '../docs'"),
    "format-version-3": (lambda m: m.update(format_version=3), r"Unsupported pack format 3"),
    # format 2 (issue 15) is a pack that names a query encoder or re-vectors the collection: it must do one
    "format-version-2-names-nothing": (lambda m: m.update(format_version=2), r"format 2 names neither"),
    "format-2-encoder-not-the-identity": (
        lambda m: m.update(format_version=2, encoder={"sha256": "0" * 64, "bytes": 10}, revectors=None),
        r"not the one the embedding identity names",
    ),
    "format-2-encoder-path": (
        lambda m: m.update(format_version=2, encoder={"sha256": "../../etc", "bytes": 10}, revectors=None),
        r"encoder.sha256 is '../../etc'",
    ),
    "format-1-with-encoder": (lambda m: m.update(encoder=None, revectors=3), r"format 1 names no encoder"),
    "format-2-revectors-without-file": (
        lambda m: m.update(format_version=2, encoder=None, revectors=3),
        r"unexpected files",
    ),
    "format-version-true": (lambda m: m.update(format_version=True), r"Unsupported pack format True"),
    "counts-missing": (lambda m: m.pop("counts"), r"counts None"),
    "counts-string": (lambda m: m["counts"].update(chunks="3"), r"counts.chunks must be an integer"),
    "counts-one-more-chunk": (
        lambda m: m["counts"].update(chunks=m["counts"]["chunks"] + 1),
        r"holds \d+ rows, its manifest says",
    ),
    "file-bytes-negative": (
        lambda m: m["files"]["chunks.parquet"].update(bytes=-1),
        r"size of chunks.parquet must be an integer",
    ),
    "file-hash-not-hex": (lambda m: m["files"]["chunks.parquet"].update(sha256="../../x"), r"sha256 of chunks.parquet"),
    "dimension-string": (
        lambda m: m["vector_codec"].update(dimension="384"),
        r"vector_codec.dimension must be an integer",
    ),
    "codec-float32": (lambda m: m["vector_codec"].update(type="float32"), r"vector_codec"),
    "embedding-extra-field": (lambda m: m["embedding"].update(path="/etc"), r"embedding"),
    "embedding-dimension-mismatch": (lambda m: m["embedding"].update(dimension=16), r"against vector dimension 384"),
    "chunker-id-control-chars": (lambda m: m.update(chunker_id="x\x1b[2J"), r"chunker_id is"),
    "adapter-wrong-file": (
        lambda m: m.update(adapter={"version": 1, "sha256": "0" * 64, "file": "../x.npy"}),
        r"adapter",
    ),
}
for _id, (_edit, _expect) in SIGNED_MANIFESTS.items():
    _signed_case(f"manifest-{_id}", _expect, lambda w, e=_edit: resign(w.packs["delta-1-2"], w.key, e))

PARQUET: dict[str, tuple[Callable[[World], tuple[str, bytes]], str]] = {
    "chunks-garbage": (lambda w: ("chunks.parquet", b"PAR1 this is not parquet PAR1"), r"not readable Parquet"),
    "chunks-extra-column": (
        lambda w: (
            "chunks.parquet",
            parquet_bytes(_chunks_table(w).append_column("path", pa.array(["/etc"] * _chunks_table(w).num_rows))),
        ),
        r"has columns",
    ),
    "chunks-missing-column": (
        lambda w: ("chunks.parquet", parquet_bytes(_chunks_table(w).drop_columns(["text"]))),
        r"has columns",
    ),
    "chunks-text-as-integers": (
        lambda w: (
            "chunks.parquet",
            parquet_bytes(
                _with_column(_chunks_table(w), "text", pa.array(range(_chunks_table(w).num_rows), pa.int64()))
            ),
        ),
        r"column text is int64",
    ),
    "chunks-null-ids": (
        lambda w: (
            "chunks.parquet",
            parquet_bytes(
                _with_column(_chunks_table(w), "id", pa.array([None] * _chunks_table(w).num_rows, pa.string()))
            ),
        ),
        r"column id is string with \d+ nulls",
    ),
    "chunks-vectors-too-short": (
        lambda w: (
            "chunks.parquet",
            parquet_bytes(
                _with_column(
                    _chunks_table(w),
                    "vector",
                    pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(_chunks_table(w).num_rows * 8, np.int8)), 8),
                )
            ),
        ),
        r"vectors are fixed_size_list<\w+: int8>\[8\], expected 384 int8",
    ),
    "documents-garbage": (lambda w: ("documents.parquet", b"\0" * 64), r"not readable Parquet"),
    "deletes-unknown-kind": (
        lambda w: (
            "deletes.parquet",
            parquet_bytes(
                pa.table(
                    {
                        "kind": pa.array(
                            ["file"] * read_parquet(w.packs["delta-1-2"].files["deletes.parquet"]).num_rows
                        ),
                        "id": read_parquet(w.packs["delta-1-2"].files["deletes.parquet"]).column("id"),
                    }
                )
            ),
        ),
        r"deletes differ from its manifest counts",
    ),
}
for _id, (_make, _expect) in PARQUET.items():
    _signed_case(f"parquet-{_id}", _expect, lambda w, m=_make: rewrite(w.packs["delta-1-2"], w.key, *m(w)))


def _duplicate_chunk_rows(w: World) -> Pack:
    """Every upserted row twice, the counts updated to match: one id would be inserted twice."""
    table = _chunks_table(w)
    pack = rewrite(w.packs["delta-1-2"], w.key, "chunks.parquet", parquet_bytes(pa.concat_tables([table, table])))
    return resign(pack, w.key, lambda m: m["counts"].update(chunks=2 * table.num_rows))


_signed_case("parquet-chunks-duplicate-ids", r"upserts one chunk id twice", _duplicate_chunk_rows)


@case("local-staging-symlinked-to-sentinel", r"Refused staging folder|would leave")
def _planted_link(w: World, ctx: Ctx) -> dict[str, Responder]:
    """Someone planted a link where the collection's staging folder goes; sync must not write through it."""
    staging = ctx.home / "staging" / hub_name(w.url)
    staging.mkdir(parents=True)
    (staging / "docs").symlink_to(ctx.sentinel, target_is_directory=True)
    return {}


@case("local-pack-folder-symlinked-to-sentinel", r"Refused pack name|would leave")
def _planted_pack_link(w: World, ctx: Ctx) -> dict[str, Responder]:
    staging = ctx.home / "staging" / hub_name(w.url) / "docs"
    staging.mkdir(parents=True)
    (staging / "delta-1-2").symlink_to(ctx.sentinel, target_is_directory=True)
    return {}


@pytest.mark.parametrize(("build", "expect"), CASES)
def test_a_hostile_hub_is_refused_and_nothing_outside_staging_changes(
    world: World, tmp_path: Path, build: Build, expect: str
) -> None:
    result = attempt(world, tmp_path, build)
    message, report = result["message"], result["report"]
    assert message, "the sync was not refused"
    assert re.search(expect, message), message
    assert report is None or not report.updated
    assert result["after"] == result["before"], "something outside the staging folder changed"
    assert local_view(result["home"]) == world.expected, "the local collection changed"
    assert not world.elsewhere.requests, f"the client went elsewhere: {world.elsewhere.requests}"
    assert not OUTSIDE.exists()
    assert len(message) < 2000 and "\x1b" not in message and "\x00" not in message


def test_there_are_over_a_hundred_cases() -> None:
    assert len(CASES) >= 100
