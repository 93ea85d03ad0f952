"""Retention of old packs (``outpost hub prune``): deleted documents stop being downloadable.

A hub keeps its history as packs (``delta-<v-1>-<v>`` per version, plus snapshots and squashed deltas
built on demand), and every one of them stays downloadable by any token that may read the
collection. So a document deleted at version D is still served from the packs that added it, until
those packs go. The policy:

- A client at version ``v`` is *supported* when ``v >= latest - keep_versions``: it gets a delta, so
  the chain links ``delta-(v-1)-v`` with ``v - 1 >= latest - keep_versions`` are kept.
- Everything else goes: older chain links, snapshots other than the latest's, and squashed deltas
  that do not end at the latest version or start before the oldest supported one.
- An older client (or a new one) falls back to a fresh snapshot of the latest version
  (``Hub.pack_for``: "a missing link is a snapshot"), which holds only what the collection holds now.

So a deleted document's text leaves every pack once the oldest supported version is at or past the
version that deleted it; ``--keep-versions 0`` removes it at once (every client re-downloads a
snapshot). Packs beyond the store's version (a publish in flight) are left to the publisher.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from outpost.hub.service import Hub
from outpost.packs.format import pack_versions

__all__ = ["PruneReport", "prune", "prune_all"]

log = logging.getLogger(__name__)


@dataclass
class PruneReport:
    collection: str
    version: int  # the latest published version
    oldest_supported: int  # clients at this version or newer still get a delta
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _keep(base: int, version: int, latest: int, oldest: int) -> bool:
    """Whether pack ``base→version`` serves a supported client (see the module docstring)."""
    if base == 0:
        return version == latest  # the latest snapshot; older snapshots hold older (maybe deleted) text
    if version - base == 1:
        return base >= oldest  # a chain link a supported client still needs
    return version == latest and base >= oldest  # a squashed delta for a supported client


def prune(hub: Hub, collection: str, keep_versions: int) -> PruneReport:
    """Remove the packs of ``collection`` that no supported client version needs."""
    store = hub.store(collection)  # CollectionNotFoundError for an unknown name
    try:
        latest = store.version
    finally:
        store.close()
    report = PruneReport(collection, latest, max(latest - keep_versions, 0))
    folder = hub.public_packs_dir(collection)
    for pack in sorted(folder.iterdir(), key=lambda p: pack_versions(p.name) or (-1, -1)):
        versions = pack_versions(pack.name)
        if versions is None or versions[1] > latest:  # not a pack, or a publish in flight
            continue
        if _keep(*versions, latest, report.oldest_supported):
            report.kept.append(pack.name)
        else:
            _remove(pack)
            report.removed.append(pack.name)
    log.info("pruned %s: removed %d packs, kept %s", collection, len(report.removed), report.kept)
    return report


def prune_all(hub: Hub, keep_versions: int, collections: list[str] | None = None) -> list[PruneReport]:
    return [prune(hub, name, keep_versions) for name in (collections or hub.names())]


def _remove(pack: Path) -> None:
    """Rename first, so a half-deleted folder is never seen as a pack (a crash leaves a hidden folder that
    the next ingest's orphan sweep removes)."""
    hidden = pack.with_name(f".pruned-{pack.name}-{os.getpid()}")
    os.replace(pack, hidden)
    shutil.rmtree(hidden)
