"""What each dashboard page shows, gathered from the core as plain dicts (templates only format them).

Nothing here talks HTTP; the routes call these and render. Hub reachability uses the same
``HubClient`` as ``outpost sync`` with a short timeout, so a dead hub costs the page little.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from outpost.app import Outpost
from outpost.errors import OutpostError
from outpost.feedback import FeedbackQueue
from outpost.hubclient import HubClient
from outpost.hubs import HubConfig, load_hubs
from outpost.models.registry import ModelEntry, Registry
from outpost.settings import Settings, default_home
from outpost.store.collections import Collections

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - pydantic-settings pulls tomli on 3.10
    import tomli as tomllib

__all__ = [
    "collection_rows",
    "fit_report",
    "hub_rows",
    "model_rows",
    "settings_rows",
]

PLANNING_SIZES = (0.5, 1.5, 3, 7, 14, 32, 70)  # billions of parameters, as `outpost models fit` plans


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


# -- collections ------------------------------------------------------------------------------


def collection_rows(op: Outpost) -> list[dict[str, Any]]:
    """One row per local collection: counts, size, model, version, origin and last sync."""
    rows = []
    for info in op.collections():
        store = op.store(info.name)
        origin = store.get_meta("hub")
        rows.append(
            {
                "name": info.name,
                "documents": info.documents,
                "chunks": info.chunks,
                "size": human_bytes(info.bytes_on_disk),
                "embedding": info.embedding.name if info.embedding else "-",
                "version": info.version,
                "origin": origin or "local",
                "local": not origin,
                "last_sync": store.get_meta("last_sync") or "",
            }
        )
    return rows


def collection_exists(settings: Settings, name: str) -> bool:
    """On disk right now (an open store may outlive a folder deleted behind the server's back)."""
    return Collections(settings.collections_dir).exists(name)


# -- sync -------------------------------------------------------------------------------------


def hub_state(hub: HubConfig) -> tuple[dict[str, int] | None, str | None]:
    """The hub's versions for this token, or None and the reason in plain words."""
    try:
        client = HubClient.for_hub(hub, timeout=3.0)  # a pinned CA that no longer parses is a reason too
    except OutpostError as exc:
        return None, str(exc)
    try:
        return {c["name"]: c["version"] for c in client.get("/v1/collections")}, None
    except OutpostError as exc:
        return None, str(exc)
    finally:
        client.close()


def _uploads(queue: FeedbackQueue, collection: str) -> dict[str, int]:
    items = queue.pending(collection)
    votes = [i.answer_vote for i in items if i.answer_vote is not None]
    sources = [v for i in items for v in i.source_votes.values()]
    return {
        "items": len(items),
        "up": votes.count(1),
        "down": votes.count(0),
        "source_up": sources.count(1),
        "source_down": sources.count(0),
    }


def hub_rows(op: Outpost, last_errors: dict[str, str]) -> list[dict[str, Any]]:
    """Each saved hub: reachable, local vs hub version per collection, and what the next sync uploads."""
    local = {r["name"]: r for r in collection_rows(op)}
    rows = []
    for hub in load_hubs(op.settings.home):
        versions, reach_error = hub_state(hub)
        names = sorted({n for n, r in local.items() if r["origin"] == hub.url} | set(versions or {}))
        collections = [
            {
                "name": name,
                "local_version": local[name]["version"] if name in local else None,
                "hub_version": (versions or {}).get(name),
                "uploads": _uploads(op.feedback, name),
            }
            for name in names
        ]
        rows.append(
            {
                "name": hub.name,
                "url": hub.url,
                "reachable": versions is not None,
                "reach_error": reach_error,
                "key": hub.hub_key,
                "last_sync": hub.last_sync,
                "last_error": last_errors.get(hub.name),
                "collections": collections,
            }
        )
    return rows


# -- models -----------------------------------------------------------------------------------


def _params(entry: ModelEntry) -> str:
    n = entry.metadata.get("parameters") or 0
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def model_rows(registry: Registry, in_use: str) -> list[dict[str, Any]]:
    return [
        {
            "name": e.name,
            "family": e.family,
            "parameters": _params(e),
            "quantization": str(e.metadata.get("quantization", "")),
            "size": human_bytes(e.size),
            "context": e.metadata.get("context_length") or "",
            "source": e.source + (f" ← {e.base}" if e.base else ""),
            "in_use": e.name == in_use.lower(),
            "modelfile": e.modelfile or "",
        }
        for e in registry.list()
    ]


def fit_report(op: Outpost, registry: Registry) -> dict[str, Any]:
    """What fits this machine and how fast, with the advisor's own arithmetic for every plan."""
    from outpost.models import advisor

    hardware = advisor.detect_hardware()
    index_bytes = sum(info.bytes_on_disk for info in op.collections())
    plans = [
        advisor.plan(hardware, advisor.ModelSpec.from_gguf(Path(e.path)), None, index_bytes) for e in _bases(registry)
    ]
    plans += [advisor.plan(hardware, advisor.candidate_quants(size), None, index_bytes) for size in PLANNING_SIZES]
    return {
        "hardware": hardware.describe(),
        "index": human_bytes(index_bytes),
        "plans": [
            {
                "model": p.spec.name,
                "quant": p.spec.quant,
                "fits": p.fits,
                "where": p.where,
                "gpu_layers": p.gpu_layers,
                "n_ctx": p.n_ctx,
                "tokens_per_s": f"{p.tokens_per_s:.1f}",
                "memory": human_bytes(p.memory.total),
                "reason": p.reason,
                "explain": p.explain(),
            }
            for p in plans
        ],
    }


def _bases(registry: Registry) -> Iterable[ModelEntry]:
    """Registered models with their own weights (a derived model plans like its base)."""
    seen: set[str] = set()
    for entry in registry.list():
        if entry.sha256 not in seen and Path(entry.path).is_file():
            seen.add(entry.sha256)
            yield entry


# -- settings ---------------------------------------------------------------------------------


def _config_toml() -> tuple[Path, dict[str, Any]]:
    path = default_home() / "config.toml"
    try:
        return path, tomllib.loads(path.read_text()) if path.is_file() else {}
    except (OSError, tomllib.TOMLDecodeError):
        return path, {}


def settings_rows(settings: Settings) -> list[dict[str, Any]]:
    """Every setting, its effective value and where it came from (default, config.toml, environment, flag)."""
    path, toml = _config_toml()
    rows = []
    for name, info in Settings.model_fields.items():
        value = getattr(settings, name)
        default = info.get_default(call_default_factory=True)
        if f"OUTPOST_{name.upper()}" in os.environ:
            origin = "environment (OUTPOST_" + name.upper() + ")"
        elif name in toml:
            origin = f"config.toml ({path})"
        elif value != default:
            origin = "command line"
        else:
            origin = "default"
        shown = "(set, hidden)" if name == "api_key" and value else ("" if value is None else str(value))
        rows.append({"name": name, "value": shown, "origin": origin, "help": info.description or ""})
    return rows
