"""Client sync: download signed packs from a hub, verify them, apply them in one transaction.

Order of trust: the hub key is pinned at first sync (or given with ``--hub-key``) and a changed key
is refused; a pack is verified (signature, every file hash, collection, versions, model) before any
row reaches the store; ``Store.apply`` then applies it in one SQLite transaction, so a crash leaves
the old version or the new one. Downloads land in a staging folder as ``*.part`` files and resume
with HTTP Range.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from outpost.errors import AuthError, CollectionNotFoundError, HubError, OutpostError, PackError
from outpost.feedback import FeedbackQueue
from outpost.home import ensure_private_dir
from outpost.packs.format import read_pack
from outpost.store.sqlite import Store, check_collection_name

__all__ = ["HubClient", "HubConfig", "SyncReport", "load_hubs", "save_hub", "sync_hub"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, advance, total)
_HUB_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class HubConfig:
    """A hub this outpost syncs from, saved as ``hubs/<name>.json`` (0600: it holds the token)."""

    name: str
    url: str
    token: str
    hub_key: str = ""
    last_sync: str = ""


def hub_name(url: str) -> str:
    host = httpx.URL(url).host or "hub"
    port = httpx.URL(url).port
    return _HUB_NAME.sub("-", f"{host}-{port}" if port else host)


def save_hub(home: Path, config: HubConfig) -> Path:
    folder = ensure_private_dir(home / "hubs")
    path = folder / f"{check_collection_name(config.name)}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(config), fh, indent=2)
    os.replace(tmp, path)
    return path


def load_hubs(home: Path) -> list[HubConfig]:
    folder = home / "hubs"
    return [HubConfig(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


class HubClient:
    """Thin HTTP client for the hub API; every failure becomes an ``OutpostError`` with the hub named."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout, connect=5.0),
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: Any) -> Any:
        try:
            response = self.http.get(path, params=params)
        except httpx.TransportError as exc:
            raise HubError(f"Cannot reach the hub at {self.url}: {exc}") from exc
        return self._check(response, path)

    def _check(self, response: httpx.Response, path: str) -> Any:
        if response.status_code == 401:
            raise AuthError(f"The hub at {self.url} refused the token (missing, wrong or revoked)")
        if response.status_code == 404:
            raise CollectionNotFoundError(path.split("/")[3] if path.count("/") >= 3 else path)
        if response.status_code >= 400:
            raise HubError(f"The hub at {self.url} answered {response.status_code}: {response.text[:200]}")
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self.http.post(path, json=body)
        except httpx.TransportError as exc:
            raise HubError(f"Cannot reach the hub at {self.url}: {exc}") from exc
        return self._check(response, path)

    def download(self, path: str, dest: Path, size: int, on_bytes: Callable[[int], None] | None = None) -> None:
        """Fetch ``path`` into ``dest``, resuming a ``dest.part`` left by an earlier, cut download."""
        if dest.is_file() and dest.stat().st_size == size:
            return
        part = dest.with_name(dest.name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        headers = {"Range": f"bytes={have}-"} if 0 < have < size else {}
        if have >= size:
            part.unlink(missing_ok=True)
            have, headers = 0, {}
        try:
            with self.http.stream("GET", path, headers=headers) as response:
                if response.status_code not in (200, 206):
                    raise HubError(f"Download of {path} failed with HTTP {response.status_code}")
                mode = "ab" if response.status_code == 206 else "wb"
                if on_bytes and mode == "ab":
                    on_bytes(have)
                with part.open(mode) as fh:
                    for block in response.iter_bytes():  # as received: a cut keeps every byte so far
                        fh.write(block)
                        if on_bytes:
                            on_bytes(len(block))
        except httpx.TransportError as exc:
            raise HubError(f"Download from {self.url} was cut ({exc}); run `outpost sync` again to resume") from exc
        if part.stat().st_size != size:
            raise HubError(f"Download of {path} is incomplete; run `outpost sync` again to resume")
        os.replace(part, dest)


@dataclass
class SyncReport:
    hub: str
    updated: dict[str, tuple[int, int, str]] = field(default_factory=dict)  # name → (from, to, pack)
    current: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unshared: list[str] = field(default_factory=list)  # synced from this hub before, no longer visible
    feedback_uploaded: int = 0


def pin_key(client: HubClient, config: HubConfig, given: str | None) -> str:
    """The hub key to trust: the pinned one, the one given, or (first sync) the hub's own."""
    served = client.get("/v1/hub")["public_key"]
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
    return expected or served


def _local_store(home: Path, name: str, hub: HubConfig, exact_below: int) -> Store:
    store = Store.open(home / "collections", name, create=True, exact_below=exact_below)
    origin = store.get_meta("hub")
    if store.version > 0 and origin != hub.url:
        store.close()
        raise PackError(f"Local collection {name!r} was not synced from {hub.url}; refusing to overwrite it")
    return store


def _fetch_pack(client: HubClient, plan: dict[str, Any], staging: Path, progress: Progress | None) -> Path:
    folder = staging / plan["name"]
    ensure_private_dir(folder)
    total = sum(plan["files"].values())
    tick = (lambda n: progress("download", n, total)) if progress else None
    for name, size in plan["files"].items():
        if (folder / name).is_file() and tick:
            tick(size)
        client.download(f"{plan['url']}/{name}", folder / name, size, tick)
    return folder


def sync_collection(
    client: HubClient, home: Path, hub: HubConfig, name: str, exact_below: int = 5000, progress: Progress | None = None
) -> tuple[int, int, str] | None:
    """Bring one local collection to the hub's latest version; None when already current."""
    store = _local_store(home, name, hub, exact_below)
    try:
        have = store.version
        plan = client.get(f"/v1/collections/{name}/sync", have=have)
        if plan["pack"] is None:
            return None
        if plan["version"] <= have:
            raise PackError(f"The hub offers version {plan['version']} of {name!r}, not newer than local {have}")
        staging = home / "staging" / hub.name / name
        folder = _fetch_pack(client, plan["pack"], staging, progress)
        try:
            _verify_and_apply(store, folder, hub, name, progress)
        except OutpostError:
            shutil.rmtree(folder, ignore_errors=True)  # a refused pack is fetched afresh next time
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return have, store.version, plan["pack"]["name"]
    except OutpostError:
        if store.version == 0:  # nothing ever arrived: leave no empty collection behind
            store.close()
            shutil.rmtree(store.folder, ignore_errors=True)
        raise
    finally:
        store.close()


def _verify_and_apply(store: Store, folder: Path, hub: HubConfig, name: str, progress: Progress | None) -> None:
    manifest, changeset = read_pack(folder, hub.hub_key)
    if manifest["collection"] != name:
        raise PackError(f"Pack is for collection {manifest['collection']!r}, not {name!r}")
    if progress:
        progress("apply", 0, 1)
    if store.get_meta("hub") != hub.url:
        store.set_meta(hub=hub.url)  # before the first apply: a crash after it still knows its origin
    store.apply(changeset)  # checks base version, replay and model identity in one transaction
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
) -> SyncReport:
    """Sync every collection the token may read; one failing collection does not stop the others."""
    client = HubClient(hub.url, hub.token)
    try:
        hub.hub_key = pin_key(client, hub, given_key)
        save_hub(home, hub)
        report = SyncReport(hub.url)
        visible = [c["name"] for c in client.get("/v1/collections")]
        for name in visible:
            try:
                result = sync_collection(client, home, hub, name, exact_below, progress)
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
        report.feedback_uploaded = upload_feedback(client, home, hub, visible, share_text)
        hub.last_sync = datetime.now(timezone.utc).isoformat(timespec="seconds")
        save_hub(home, hub)
        return report
    finally:
        client.close()


def upload_feedback(client: HubClient, home: Path, hub: HubConfig, visible: list[str], share_text: bool) -> int:
    """Send queued votes for this hub's collections; marked uploaded only after the hub took them."""
    queue = FeedbackQueue(home)
    sent = 0
    try:
        for name in visible:
            path = home / "collections" / name / "store.sqlite"
            if not path.is_file():
                continue
            store = Store.open(home / "collections", name)
            origin = store.get_meta("hub")
            store.close()
            items = queue.pending(name) if origin == hub.url else []
            try:
                for start in range(0, len(items), 500):
                    batch = items[start : start + 500]
                    body = {"items": [i.payload(share_text) for i in batch]}
                    rejected = client.post(f"/v1/collections/{name}/feedback", body).get("rejected") or []
                    queue.mark_uploaded([i.id for i in batch])  # rejected ones never fit: not retried
                    sent += len(batch) - len(rejected)
                    if rejected:
                        log.warning("The hub refused %d votes on %r: %s", len(rejected), name, rejected[0]["reason"])
            except HubError as exc:  # e.g. 403, a token without the feedback right: the packs synced all the same
                log.warning("Votes on %r stay queued (not uploaded): %s", name, exc)
    finally:
        queue.close()
    return sent


def _unshared(home: Path, hub: HubConfig, visible: set[str], prune: bool) -> list[str]:
    """Local collections from this hub that the token no longer sees (deleted with ``prune``)."""
    gone: list[str] = []
    folder = home / "collections"
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if path.name in visible or not (path / "store.sqlite").is_file():
            continue
        store = Store.open(folder, path.name)
        origin = store.get_meta("hub")
        store.close()
        if origin == hub.url:
            gone.append(path.name)
            if prune:
                shutil.rmtree(path)
    return gone


def hub_versions(hub: HubConfig) -> dict[str, int] | None:
    """Latest versions the hub offers this token, or None when it cannot be reached quickly."""
    client = HubClient(hub.url, hub.token, timeout=3.0)
    try:
        return {c["name"]: c["version"] for c in client.get("/v1/collections")}
    except OutpostError:
        return None
    finally:
        client.close()
