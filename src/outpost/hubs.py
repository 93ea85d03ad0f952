"""Hub configs: the hubs this outpost syncs from, one ``hubs/<name>.json`` each (0600: it holds the token).

Kept apart from the HTTP client (:mod:`outpost.hubclient`) and from sync (:mod:`outpost.sync`) because
everything that talks to a hub starts here — sync, ``hub://`` model pulls, the dashboard — and the pinned
hub key and private CA must reach every one of them the same way (DESIGN §11).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from outpost.fsutil import atomic_write_text
from outpost.home import ensure_private_dir
from outpost.names import check_name

__all__ = ["HubConfig", "hub_name", "load_hubs", "save_hub"]

_HUB_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class HubConfig:
    """A hub this outpost syncs from, saved as ``hubs/<name>.json`` (0600: it holds the token).

    ``ca_pem`` is the private CA pinned with ``--hub-ca`` (PEM text, kept here so later syncs verify the
    hub's certificate against it, and only against it); ``hub_key`` is the hub's Ed25519 key, pinned at
    first sync or given with ``--hub-key``.
    """

    name: str
    url: str
    token: str
    hub_key: str = ""
    last_sync: str = ""
    ca_pem: str = ""


def hub_name(url: str) -> str:
    """A file name for a hub's config and staging folder, derived from its host and port."""
    host = httpx.URL(url).host or "hub"
    port = httpx.URL(url).port
    name = _HUB_NAME.sub("-", f"{host}-{port}" if port else host).strip("-._")[:64]
    return name or "hub"


def save_hub(home: Path, config: HubConfig) -> Path:
    """Write ``hubs/<name>.json`` (0600) atomically; an unchanged config is not rewritten."""
    folder = ensure_private_dir(home / "hubs")
    path = folder / f"{check_name(config.name, 'hub name')}.json"
    text = json.dumps(asdict(config), indent=2)
    if path.is_file() and path.read_text() == text:
        return path
    return atomic_write_text(path, text)


def load_hubs(home: Path) -> list[HubConfig]:
    """Every saved hub config, in name order (none when no hub was ever synced)."""
    folder = home / "hubs"
    return [HubConfig(**json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
