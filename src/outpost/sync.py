"""Client sync: download signed packs from a hub, verify them, apply them in one transaction.

The laptop trusts nothing a hub sends before checking it (docs/security.md, "Hub → laptop"):

- **Names.** Collection names (:func:`read_listing`), pack names (``snapshot-N`` / ``delta-M-N``,
  :func:`read_plan`) and file names (the fixed ``PACK_FILES``) are checked against their grammar; the
  client builds every URL from those names (a URL in a plan is ignored) and every path with
  :func:`outpost.names.safe_join`, inside the staging folder, before any ``mkdir``, write, rename or delete.
- **Sizes.** JSON answers are read up to ``hubclient.MAX_JSON_BYTES``; the manifest and its signature up to small
  fixed caps; data files up to the size the *signed* manifest gives them, and never past ``max_pack_bytes``.
  A hub that sends more than it announced is cut off at the announced size and refused.
- **Order of trust.** The hub key is pinned at first sync (loudly, with its fingerprint) or given with
  ``--hub-key``; a changed key is refused. The manifest and its signature are fetched first and verified
  before a data byte is requested; the plan, the pack's name and the signed manifest must agree on the
  collection and the versions (integers, newer than local, a delta only on the local version). Every file
  hash is checked before a row is parsed, and ``Store.apply`` applies the pack in one SQLite transaction,
  so a crash leaves the old version or the new one.
- **Transport.** :class:`outpost.hubclient.HubClient`: TLS certificates are verified (a private CA is pinned
  with ``--hub-ca`` and kept in the hub's config, :mod:`outpost.hubs`); redirects are refused, never followed.

Downloads land in ``staging/<hub>/<collection>/<pack>/`` as ``*.part`` files and resume with HTTP Range.

**A new embedder** (``outpost.embed.encoders``): a pack whose signed manifest names a query encoder makes the
client fetch that encoder first, into ``encoders/.partial/<sha256>/`` (resumable like pack files), check
``encoder.json`` against the signed hash and every file against ``encoder.json``, and move it to
``encoders/<sha256>/`` in one rename. Only then is the pack applied — in one transaction that swaps every vector
and the identity together — so retrieval, which picks the encoder by the collection's identity, sees the old
encoder with the old vectors until that commit and the new pair after it. A cut download resumes at the next sync;
a tampered encoder is refused and removed, and the collection stays as it was.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from outpost.embed.encoders import ENCODER_JSON, encoders_dir, install_encoder, parse_encoder_json
from outpost.errors import AuthError, ConfigError, HubError, OutpostError, PackError, StorageError
from outpost.feedback import FeedbackQueue
from outpost.home import ensure_private_dir
from outpost.hubclient import HubClient
from outpost.hubs import HubConfig, save_hub
from outpost.labels import adopt_label, hub_label
from outpost.names import safe_join, shown
from outpost.packs.format import (
    MANIFEST_FILES,
    check_pack_file,
    load_manifest,
    pack_name,
    parse_pack_name,
    read_pack,
)
from outpost.packs.signing import parse_public_key
from outpost.records import EncoderRef
from outpost.store.collections import Collections
from outpost.store.sqlite import Store, check_collection_name

__all__ = [
    "DEFAULT_MAX_PACK_BYTES",
    "PackPlan",
    "SyncReport",
    "hub_versions",
    "pin_key",
    "read_listing",
    "read_plan",
    "sync_collection",
    "sync_hub",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, advance, total)

DEFAULT_MAX_PACK_BYTES = 4 * 2**30  # per file; the setting `max_pack_bytes`
MAX_FILE_BYTES = {"manifest.json": 2**20, "manifest.sig": 1024}  # before the signature is checked
MAX_COLLECTIONS = 10_000


# -- what a hub says, checked ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PackPlan:
    """A hub's sync plan once checked: a canonical pack name, its versions, and each file's announced size."""

    name: str
    base: int
    version: int
    files: dict[str, int]


def _bad_plan(collection: str, why: str) -> PackError:
    return PackError(f"The hub's sync plan for {collection!r} is refused: {why}")


def _integer(value: object, collection: str, what: str, high: int) -> int:
    if type(value) is not int or not 0 <= value <= high:
        raise _bad_plan(collection, f"{what} must be an integer from 0 to {high}, not {shown(value)}")
    return value


def read_plan(raw: object, collection: str, have: int, max_pack_bytes: int) -> PackPlan | None:
    """Check a sync plan against the grammar and the local version; None when the hub says we are current.

    A plan carries names and sizes only: any URL in it is ignored (the client builds its own). The pack's
    name is the truth for its versions; a ``version`` or ``base_version`` field that disagrees is refused.
    """
    if not isinstance(raw, dict) or raw.get("collection") != collection:
        raise _bad_plan(collection, f"it is not a plan for this collection: {shown(raw)}")
    version = _integer(raw.get("version"), collection, "version", 10**12)
    pack = raw.get("pack")
    if pack is None:
        if version != have:
            raise _bad_plan(collection, f"no pack, but version {version} while local is at {have}")
        return None
    if version <= have:
        raise PackError(f"The hub offers version {version} of {collection!r}, not newer than local {have}: refused")
    if not isinstance(pack, dict):
        raise _bad_plan(collection, f"pack is {shown(pack)}")
    base, pack_version = parse_pack_name(pack.get("name"))
    if pack_version != version or any(
        key in pack and pack[key] != value
        for key, value in (("version", version), ("base_version", base), ("snapshot", base == 0))
    ):
        raise _bad_plan(collection, f"pack {pack['name']} does not match the plan's versions")
    if base not in (0, have):
        raise PackError(
            f"The hub offers a delta from version {base} of {collection!r}, but local is at {have}: refused"
        )
    return PackPlan(pack["name"], base, version, _read_files(pack.get("files"), collection, max_pack_bytes))


def _read_files(files: object, collection: str, max_pack_bytes: int) -> dict[str, int]:
    if not isinstance(files, dict) or not set(MANIFEST_FILES) <= set(files):
        raise _bad_plan(collection, f"files are {shown(files)}")
    sizes: dict[str, int] = {}
    for name, size in files.items():
        check_pack_file(name)
        cap = MAX_FILE_BYTES.get(name, max_pack_bytes)
        if type(size) is int and size > cap:
            raise PackError(f"The hub announces {size} bytes for {name}, over the {cap}-byte limit (max_pack_bytes)")
        sizes[name] = _integer(size, collection, f"size of {name}", cap)
    return sizes


def read_listing(raw: object) -> dict[str, int]:
    """The hub's collection list as ``{name: version}``: names in the collection grammar, integer versions."""
    if not isinstance(raw, list) or len(raw) > MAX_COLLECTIONS:
        raise PackError(f"The hub's collection list is refused: {shown(raw)}")
    listing: dict[str, int] = {}
    for entry in raw:
        name = entry.get("name") if isinstance(entry, dict) else None
        version = entry.get("version") if isinstance(entry, dict) else None
        try:
            name = check_collection_name(name)
        except (ConfigError, TypeError):
            raise PackError(f"The hub listed an invalid collection name {shown(name)}: refusing the list") from None
        if type(version) is not int or version < 0 or name in listing:
            raise PackError(f"The hub listed collection {name!r} with version {shown(version)}: refusing the list")
        listing[name] = version
    return listing


def _served_key(raw: object) -> str:
    key = raw.get("public_key") if isinstance(raw, dict) else None
    if not isinstance(key, str) or len(key) > 128:
        raise PackError(f"The hub's public key is refused: {shown(key)}")
    parse_public_key(key)
    return key


# -- sync --------------------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    hub: str
    updated: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # name → (from, to, pack)
    current: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unshared: list[str] = field(default_factory=list)  # synced from this hub before, no longer visible
    feedback_uploaded: int = 0


def pin_key(client: HubClient, config: HubConfig, given: str | None) -> tuple[str, bool]:
    """The hub key to trust — the pinned one, the one given, or (first sync) the hub's own — and whether
    it was taken on first use, unverified (the caller says so loudly)."""
    if given:
        parse_public_key(given)
    served = _served_key(client.get("/v1/hub"))
    expected = config.hub_key or given
    if given and config.hub_key and given != config.hub_key:
        raise PackError(
            f"--hub-key differs from the key pinned for {config.url}; remove hubs/{config.name}.json to re-pin"
        )
    if expected and served != expected:
        raise PackError(
            f"The hub at {config.url} now presents key {served}, not the pinned {expected}. Refusing to sync: "
            "if the hub's key really changed, remove the pinned hub file and sync again with --hub-key."
        )
    return expected or served, not expected


def _local_store(home: Path, name: str, hub: HubConfig, exact_below: int) -> Store:
    store = Collections.in_home(home, exact_below).open(name, create=True)
    origin = store.get_meta("hub")
    if store.version > 0 and origin != hub.url:
        store.close()
        raise PackError(f"Local collection {name!r} was not synced from {hub.url}; refusing to overwrite it")
    return store


def _remove(path: Path, base: Path) -> None:
    """Delete a staging folder, but only one that is inside ``base`` (checked again, just before)."""
    if path.resolve().is_relative_to(base.resolve()) and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


def _clear_other_packs(staging: Path, keep: str) -> None:
    """One pack in progress per collection: drop what an earlier, different plan left in staging."""
    if not staging.is_dir():
        return
    for entry in staging.iterdir():
        if entry.name == keep:
            continue
        if entry.is_dir() and not entry.is_symlink():
            _remove(entry, staging)
        else:
            entry.unlink()  # a stray file, or a link (removing a link never touches what it points to)


def _fetch_pack(
    client: HubClient, collection: str, plan: PackPlan, staging: Path, hub_key: str, progress: Progress | None
) -> Path:
    """Download a pack into staging: manifest and signature first, verified, then the data files it signs."""
    _clear_other_packs(staging, plan.name)
    folder = ensure_private_dir(safe_join(staging, plan.name, what="pack name"))
    url = f"/v1/collections/{collection}/packs/{plan.name}"
    for name in MANIFEST_FILES:
        client.download(f"{url}/{name}", safe_join(folder, name, what="pack file"), plan.files[name])
    manifest = load_manifest(folder, hub_key)
    _check_manifest_against_plan(manifest, collection, plan)
    sizes = {name: entry["bytes"] for name, entry in manifest["files"].items()}
    total = sum(sizes.values())
    tick = (lambda n: progress("download", n, total)) if progress else None
    for name, size in sizes.items():
        client.download(f"{url}/{name}", safe_join(folder, name, what="pack file"), size, tick)
    return folder


def _check_manifest_against_plan(manifest: dict[str, Any], collection: str, plan: PackPlan) -> None:
    """The signed manifest must describe exactly the pack the plan named, with the sizes it announced."""
    if manifest["collection"] != collection:
        raise PackError(f"Pack is for collection {manifest['collection']!r}, not {collection!r}: refused")
    if (manifest["base_version"], manifest["version"]) != (plan.base, plan.version):
        signed = pack_name(manifest["base_version"], manifest["version"])
        raise PackError(f"The hub named the pack {plan.name}, but its signed manifest is {signed}: refused")
    announced = {name: size for name, size in plan.files.items() if name not in MANIFEST_FILES}
    if announced != {name: entry["bytes"] for name, entry in manifest["files"].items()}:
        raise PackError(f"The hub's plan for {plan.name} announces other files or sizes than its signed manifest")


def sync_collection(
    client: HubClient,
    home: Path,
    hub: HubConfig,
    name: str,
    exact_below: int = 5000,
    progress: Progress | None = None,
    max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES,
) -> tuple[int, int, str] | None:
    """Bring one local collection to the hub's latest version; None when already current.

    The collection's write lock is held from the plan to the apply: a second sync of it (another process) waits,
    then finds it current, instead of downloading into the same staging files.
    """
    store = _local_store(home, name, hub, exact_below)
    try:
        with store.writing():
            return _sync_locked(client, home, store, hub, name, progress, max_pack_bytes)
    except OutpostError:
        if store.version == 0:  # nothing ever arrived: leave no empty collection behind
            store.close()
            shutil.rmtree(store.folder, ignore_errors=True)
        raise
    finally:
        store.close()


def _sync_locked(
    client: HubClient,
    home: Path,
    store: Store,
    hub: HubConfig,
    name: str,
    progress: Progress | None,
    max_pack_bytes: int,
) -> tuple[int, int, str] | None:
    have = store.version
    raw_plan = client.get(f"/v1/collections/{name}/sync", have=have)
    plan = read_plan(raw_plan, name, have, max_pack_bytes)
    label = hub_label(raw_plan)  # the hub decides its collections' sensitivity label (issue 13)
    staging_root = home / "staging"
    staging = safe_join(staging_root, hub.name, name, what="staging folder")
    if plan is None:
        _remove(staging, staging_root)  # a sync killed after its commit left the applied pack here
        adopt_label(store, label)
        return None
    try:
        folder = _fetch_pack(client, name, plan, staging, hub.hub_key, progress)
        encoder = load_manifest(folder, hub.hub_key).get("encoder")
        if encoder is not None:  # before the apply: the new vectors never wait for their encoder
            fetch_encoder(client, home, name, EncoderRef(**encoder), progress, max_pack_bytes)
        _verify_and_apply(store, folder, hub, name, plan, progress, home)
    except (HubError, AuthError):
        raise  # the network failed, not the pack: keep what arrived, the next sync resumes it
    except OutpostError:
        _remove(staging / plan.name, staging)  # a refused pack is fetched afresh next time
        raise
    except (OSError, sqlite3.Error, MemoryError) as exc:  # the disk (full?) or memory failed, not the hub
        _remove(staging / plan.name, staging)  # give the space back; the next sync starts this pack afresh
        raise StorageError.during(f"Syncing {name!r} to version {plan.version}", exc) from exc
    _remove(staging, staging_root)
    adopt_label(store, label)
    return have, store.version, plan.name


def fetch_encoder(
    client: HubClient,
    home: Path,
    collection: str,
    ref: EncoderRef,
    progress: Progress | None = None,
    max_bytes: int = DEFAULT_MAX_PACK_BYTES,
) -> Path:
    """The encoder ``ref`` names, installed in ``encoders/<sha256>/`` (downloaded and verified once, see above)."""
    root = encoders_dir(home)
    final = safe_join(root, ref.sha256, what="encoder")
    if (final / ENCODER_JSON).is_file():
        return final
    partial = ensure_private_dir(root / ".partial")
    staged = ensure_private_dir(safe_join(partial, ref.sha256, what="encoder"))
    url = f"/v1/collections/{collection}/encoders/{ref.sha256}"
    try:
        client.download(f"{url}/{ENCODER_JSON}", staged / ENCODER_JSON, ref.bytes)
        spec = parse_encoder_json((staged / ENCODER_JSON).read_bytes(), ref.sha256)
        total = sum(size for _, size in spec.files.values())
        too_big = [f for f, (_, size) in spec.files.items() if size > max_bytes]
        if too_big:
            raise PackError(f"The shipped encoder's {too_big[0]} is over the {max_bytes}-byte limit (max_pack_bytes)")
        tick = (lambda n: progress("encoder", n, total)) if progress else None
        for file, (_, size) in spec.files.items():
            client.download(f"{url}/{file}", safe_join(staged, file, what="encoder file"), size, tick)
        return install_encoder(staged, home, ref.sha256)
    except PackError:
        _remove(staged, partial)  # tampered or malformed: fetched afresh next time, never used
        raise


def _verify_and_apply(
    store: Store, folder: Path, hub: HubConfig, name: str, plan: PackPlan, progress: Progress | None, home: Path
) -> None:
    manifest, changeset = read_pack(folder, hub.hub_key)  # signature, shape, every hash, every table's schema
    _check_manifest_against_plan(manifest, name, plan)
    if changeset.encoder is not None and not (encoders_dir(home) / changeset.encoder.sha256 / ENCODER_JSON).is_file():
        raise PackError(f"The encoder of {name!r} is not installed: refusing to apply its vectors without it")
    mine = store.embedding
    switching = changeset.revectors is not None or changeset.snapshot  # every vector replaced in one transaction
    if mine is not None and changeset.embedding is not None and changeset.embedding != mine and not switching:
        raise PackError(
            f"The hub's pack for {name!r} was embedded with {changeset.embedding.short()}, but the local copy with "
            f"{mine.short()}: refused. If the hub re-embedded the collection, delete the local copy and sync again."
        )
    if progress:
        progress("apply", 0, 1)
    if store.get_meta("hub") != hub.url:
        store.set_meta(hub=hub.url)  # before the first apply: a crash after it still knows its origin
    try:
        store.apply(changeset)  # checks base version, replay and model identity in one transaction
    except sqlite3.Error as exc:  # e.g. a signed pack that upserts a chunk id the collection already has
        raise PackError(f"Pack {plan.name} for {name!r} could not be applied ({exc}); nothing changed") from exc
    store.set_meta(last_sync=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if progress:
        progress("apply", 1, 1)


def sync_hub(
    home: Path,
    hub: HubConfig,
    given_key: str | None = None,
    prune: bool = False,
    exact_below: int = 5000,
    progress: Progress | None = None,
    share_text: bool = False,
    *,
    max_pack_bytes: int = DEFAULT_MAX_PACK_BYTES,
    on_first_pin: Callable[[str], None] | None = None,
) -> SyncReport:
    """Sync every collection the token may read; one failing collection does not stop the others.

    ``on_first_pin(key)`` is called when the hub's key is trusted on first use, unverified: the CLI warns
    loudly with its fingerprint. ``last_sync`` in the hub's config moves only when every collection synced.
    """
    client = HubClient.for_hub(hub)
    try:
        hub.hub_key, first_use = pin_key(client, hub, given_key)
        if first_use and on_first_pin:
            on_first_pin(hub.hub_key)
        save_hub(home, hub)
        report = SyncReport(hub.url)
        visible = list(read_listing(client.get("/v1/collections")))
        for name in visible:
            try:
                result = _sync_one(client, home, hub, name, exact_below, progress, max_pack_bytes)
            except AuthError:
                raise
            except OutpostError as exc:  # this collection fails; the others still sync
                report.failed[name] = str(exc)
                continue
            if result is None:
                report.current.append(name)
            else:
                report.updated[name] = result
        report.unshared = _unshared(home, hub, set(visible), prune)
        if report.updated or report.unshared:
            prune_encoders(home)
        report.feedback_uploaded = upload_feedback(client, home, hub, visible, share_text)
        if not report.failed:
            hub.last_sync = datetime.now(timezone.utc).isoformat(timespec="seconds")
            save_hub(home, hub)
        return report
    finally:
        client.close()


def _sync_one(
    client: HubClient,
    home: Path,
    hub: HubConfig,
    name: str,
    exact_below: int,
    progress: Progress | None,
    max_pack_bytes: int,
) -> tuple[int, int, str] | None:
    """``sync_collection``, with a failure of the disk or of SQLite (opening the store) as this collection's
    ``StorageError``: one collection the machine cannot write never stops the others."""
    try:
        return sync_collection(client, home, hub, name, exact_below, progress, max_pack_bytes)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError.during(f"Syncing {name!r}", exc) from exc


def prune_encoders(home: Path) -> list[str]:
    """Delete installed encoders that no local collection's identity names any more (a rollback or a newer
    fine-tune left them: ~90 MB each). A process still searching with one keeps it in memory until it reloads."""
    root = encoders_dir(home)
    if not root.is_dir():
        return []
    local = Collections.in_home(home)
    named: set[str] = set()
    for name in local.names():
        store = local.open(name)
        try:
            identity = store.embedding
        finally:
            store.close()
        if identity is not None:
            named.add(identity.weights_sha256)
    gone = []
    for entry in root.iterdir():
        if entry.name not in named and not entry.name.startswith(".") and entry.is_dir() and not entry.is_symlink():
            _remove(entry, root)
            gone.append(entry.name)
    return gone


def upload_feedback(client: HubClient, home: Path, hub: HubConfig, visible: list[str], share_text: bool) -> int:
    """Send queued votes for this hub's collections; marked uploaded only after the hub took them."""
    queue = FeedbackQueue(home)
    local = Collections.in_home(home)
    sent = 0
    try:
        for name in visible:
            items = queue.pending(name) if _origin(local, name) == hub.url else []
            try:
                for start in range(0, len(items), 500):
                    batch = items[start : start + 500]
                    body = {"items": [i.payload(share_text) for i in batch]}
                    rejected = _rejected(client.post(f"/v1/collections/{name}/feedback", body))
                    queue.mark_uploaded([i.id for i in batch])  # rejected ones never fit: not retried
                    sent += len(batch) - min(len(rejected), len(batch))
                    if rejected:
                        log.warning("The hub refused %d votes on %r: %s", len(rejected), name, shown(rejected[0]))
            except HubError as exc:  # e.g. 403, a token without the feedback right: the packs synced all the same
                log.warning("Votes on %r stay queued (not uploaded): %s", name, exc)
    finally:
        queue.close()
    return sent


def _rejected(answer: object) -> list[object]:
    """The reasons a hub gave for votes it refused (whatever shape a hostile hub gives its answer)."""
    rejected = answer.get("rejected") if isinstance(answer, dict) else None
    if not isinstance(rejected, list):
        return []
    return [r.get("reason") if isinstance(r, dict) else r for r in rejected]


def _unshared(home: Path, hub: HubConfig, visible: set[str], prune: bool) -> list[str]:
    """Local collections from this hub that the token no longer sees (deleted with ``prune``)."""
    gone: list[str] = []
    local = Collections.in_home(home)
    for name in local.names():
        if name not in visible and _origin(local, name) == hub.url:
            gone.append(name)
            if prune:
                local.delete(name)
    return gone


def _origin(local: Collections, name: str) -> str | None:
    """The hub URL a local collection was synced from; None for one made here, one that is not there, or one SQLite
    cannot open (a damaged file: its own sync already failed with that, and one collection never stops the rest)."""
    if not local.exists(name):
        return None
    try:
        store = local.open(name)
    except (OSError, sqlite3.Error):
        return None
    try:
        return store.get_meta("hub")
    finally:
        store.close()


def hub_versions(hub: HubConfig) -> dict[str, int] | None:
    """Latest versions the hub offers this token, or None when it cannot be reached quickly."""
    try:
        client = HubClient.for_hub(hub, timeout=3.0)
    except OutpostError:
        return None
    try:
        return read_listing(client.get("/v1/collections"))
    except OutpostError:
        return None
    finally:
        client.close()
