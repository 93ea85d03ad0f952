"""Pull models into the local registry: from a file, from a hub (``hub://name``), or Hugging Face (``hf://``).

A hub pull is resumable (HTTP Range into a ``.part`` file) and verified twice: the hub's signed
model manifest (Ed25519, the key pinned at first sync) names the sha256 and size, and the copied
bytes must hash to it before the model is listed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from outpost.errors import ConfigError, IntegrityError, ModelNotFoundError
from outpost.fsutil import commit_file
from outpost.hashing import sha256_file
from outpost.home import ensure_private_dir
from outpost.hubclient import HubClient
from outpost.hubs import HubConfig, load_hubs
from outpost.models.registry import ModelEntry, Registry
from outpost.names import check_name, shown
from outpost.packs.signing import verify

__all__ = ["pull"]

Progress = Callable[[str, int, int], None]
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _hub_for(home: Path, url: str | None) -> HubConfig:
    hubs = load_hubs(home)
    if url:
        hubs = [h for h in hubs if h.url == url.rstrip("/")]
    if not hubs:
        raise ConfigError("No hub configured: run `outpost sync --hub URL --token TOKEN` first")
    if not hubs[0].hub_key:
        raise ConfigError(f"No pinned key for {hubs[0].url}: run `outpost sync` once to pin it")
    return hubs[0]


def _signed_manifest(hub: HubConfig, name: str, listing: object) -> dict[str, Any]:
    """The hub's model manifest, verified against the pinned key and checked field by field.

    Whatever shape a hostile or older hub answers with becomes one ``IntegrityError``, never a ``KeyError``;
    the sha256 becomes a file name, so it must be 64 hex digits (DESIGN §11: nothing from outside is a path
    unchecked).
    """
    if not isinstance(listing, dict) or not isinstance(listing.get("manifest"), str):
        raise IntegrityError(f"The hub at {hub.url} answered model {name!r} without a signed manifest")
    signature = listing.get("signature")
    if not isinstance(signature, str) or not signature.isascii():
        raise IntegrityError(f"The hub at {hub.url} answered model {name!r} without a signature")
    verify(hub.hub_key, listing["manifest"].encode("utf-8"), signature.encode("ascii"))
    try:
        manifest = json.loads(listing["manifest"])
    except (ValueError, RecursionError) as exc:
        raise IntegrityError(f"The hub's signed manifest for {name!r} is not JSON") from exc
    if not isinstance(manifest, dict) or manifest.get("name") != name:
        found = manifest.get("name") if isinstance(manifest, dict) else None
        raise IntegrityError(f"The hub's manifest is for {shown(found)}, not {name!r}")
    size, sha = manifest.get("size"), manifest.get("sha256")
    if not isinstance(size, int) or size < 0 or not isinstance(sha, str) or not _SHA256.fullmatch(sha):
        raise IntegrityError(f"The hub's manifest for {name!r} has no valid size and sha256")
    return manifest


def pull_from_hub(home: Path, name: str, hub_url: str | None = None, progress: Progress | None = None) -> ModelEntry:
    check_name(name, "model name")  # it goes into the URL
    hub = _hub_for(home, hub_url)
    client = HubClient.for_hub(hub)  # the pinned private CA too, as sync uses
    try:
        manifest = _signed_manifest(hub, name, client.get(f"/v1/models/{name}"))
        registry = Registry(home)
        ensure_private_dir(registry.blobs)
        staged = registry.blobs / f".pull-{manifest['sha256']}.gguf"
        tick = (lambda n: progress("download", n, manifest["size"])) if progress else None
        client.download(f"/v1/models/{name}/blob", staged, manifest["size"], tick)
    finally:
        client.close()
    if sha256_file(staged) != manifest["sha256"]:
        staged.unlink()
        raise IntegrityError(f"Model {name!r} from {hub.url} does not match its signed sha256: removed")
    blob = registry.blobs / f"sha256-{manifest['sha256']}.gguf"
    commit_file(staged, blob)
    return registry.register_file(blob, manifest["sha256"], name, "hub")


def pull_from_huggingface(home: Path, spec: str, name: str | None, progress: Progress | None = None) -> ModelEntry:
    """``hf://owner/repo/file.gguf``: download with huggingface_hub when online, then register."""
    parts = spec.removeprefix("hf://").split("/")
    if len(parts) < 3 or not parts[-1].endswith(".gguf"):
        raise ConfigError(f"Expected hf://OWNER/REPO/FILE.gguf, not {spec!r}")
    try:
        from huggingface_hub import hf_hub_download

        cache = ensure_private_dir(home / "cache" / "hf")
        path = hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), cache_dir=str(cache))
    except Exception as exc:  # offline, unknown repo or file, network errors: one clear message
        raise ModelNotFoundError(
            f"Cannot download {spec} from Hugging Face ({type(exc).__name__}): this needs the network. "
            "Offline, copy the .gguf file here and run `outpost models pull FILE`."
        ) from exc
    return Registry(home).pull_file(Path(path), name or Path(parts[-1]).stem.lower(), progress)


def pull(home: Path, source: str, name: str | None = None, progress: Progress | None = None) -> ModelEntry:
    if source.startswith("hub://"):
        return pull_from_hub(home, source.removeprefix("hub://"), None, progress)
    if source.startswith("hf://"):
        return pull_from_huggingface(home, source, name, progress)
    return Registry(home).pull_file(Path(source), name, progress)
