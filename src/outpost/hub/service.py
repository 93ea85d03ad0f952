"""The hub's core: versioned collections, atomic publishing, and the packs clients download.

Publishing a version is: plan the changeset → write its signed delta pack → ``store.apply``. The
store's version is what the hub serves, and its pack always exists before it (the pack is written
first), so a crash at any point publishes nothing: a pack beyond the store's version is an orphan
that the next ingest removes before it redoes the work.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
import threading
from pathlib import Path

from outpost.embed.base import Embedder
from outpost.embed.encoders import ENCODER_JSON, encoder_folder, encoder_for
from outpost.errors import StorageError, VersionConflictError
from outpost.faults import fault
from outpost.home import ensure_private_dir
from outpost.hub.home import HubHome
from outpost.hub.metadata import timestamp
from outpost.ingest.chunker import Chunker
from outpost.ingest.discover import discover
from outpost.ingest.limits import ReadLimits
from outpost.ingest.pipeline import IngestReport, Progress, Stages, plan
from outpost.packs.format import pack_name, pack_versions, read_pack, write_pack
from outpost.packs.squash import squash
from outpost.records import Changeset, CollectionInfo, EmbeddingIdentity, EncoderRef
from outpost.store.collections import Collections
from outpost.store.lock import pid_alive
from outpost.store.sqlite import Store, check_collection_name

__all__ = ["Hub"]

log = logging.getLogger(__name__)

PUBLISHED_AT = "published_at"  # store meta: the time of the publish that made its version, committed with it
_TEMP_PACK = re.compile(r"\..+\.tmp-(\d+)")  # write_pack's temp folder: .<pack>.tmp-<pid>


class Hub:
    """Collections on the hub and their packs."""

    def __init__(self, home: HubHome, exact_below: int = 5000) -> None:
        self.home = home.require()
        self.exact_below = exact_below
        self._lock = threading.Lock()

    # -- collections --------------------------------------------------------------------------

    @property
    def collections(self) -> Collections:
        # durable: a hub's commit must survive power loss, or a version number could be published twice
        return Collections(self.home.collections_dir, self.exact_below, durable=True)

    def names(self) -> list[str]:
        return self.collections.names()

    def store(self, name: str, create: bool = False) -> Store:
        """A collection's store (the caller closes it); ``CollectionNotFoundError`` unless it exists or ``create``."""
        return self.collections.open(name, create=create)

    def info(self, name: str) -> CollectionInfo:
        store = self.store(name)
        try:
            return store.info()
        finally:
            store.close()

    # -- publishing ---------------------------------------------------------------------------

    def ingest(
        self,
        paths: list[Path],
        collection: str,
        embedder: Embedder,
        chunker: Chunker,
        sync: bool = False,
        progress: Progress | None = None,
        limits: ReadLimits | None = None,
        stages: Stages | None = None,
    ) -> IngestReport:
        """Ingest into a hub collection; anything that changed becomes exactly one new version.

        ``stages`` says where reading, chunking and embedding run (default: here; ``ingest.ray_pipeline``: Ray).

        The collection's write lock is held from planning to publishing: a second ``hub ingest`` waits, then
        plans on this one's version (never on the same base, which would write a second pack of one name).
        """
        files = discover(paths)
        store = self.store(collection, create=True)
        try:
            embedder = self.collection_embedder(store, embedder)
            with store.writing():
                self._record_version(store)  # the row of a publish killed after its apply, even if none follows
                changeset, report = plan(store, files, embedder, chunker, sync, progress, limits, stages)
                if not changeset.is_empty():
                    report.version = self.publish(store, changeset)
                return report
        finally:
            store.close()

    def publish(self, store: Store, changeset: Changeset) -> int:
        """Write the version's pack, then apply it, under the collection's write lock.

        The base is checked before the pack is written: a changeset planned on an older version must not
        overwrite the pack that version's successor was already published with. Orphans of a publish killed
        between its pack and its apply are removed first, whoever publishes next (an ingest, a training).
        """
        with store.writing():
            current = store.version
            if current != changeset.base_version:
                raise VersionConflictError(
                    f"Hub collection {store.name!r} is at version {current}, but the change was planned on version "
                    f"{changeset.base_version} (another publish came first); run it again"
                )
            self._record_version(store)  # the row of a publish killed after its apply, first
            self._drop_orphans(store)
            return self._publish(store, changeset)

    def encoder(self, identity: EmbeddingIdentity | None) -> tuple[Path, EncoderRef] | None:
        """The hub's encoder folder and reference for ``identity``, if it names one the hub shipped
        (``outpost.hub.embedder``): every pack of such a collection names it, signed, for laptops to fetch."""
        folder = encoder_folder(self.home.root, identity)
        if folder is None or identity is None:
            return None
        return folder, EncoderRef(identity.weights_sha256, (folder / ENCODER_JSON).stat().st_size)

    def collection_embedder(self, store: Store, embedder: Embedder) -> Embedder:
        """The encoder a fine-tuned collection embeds with (its identity names it: ``encoder_for``, loaded once per
        process), else ``embedder``: so an ingest into it, here or on Ray, embeds new chunks like the rest, while
        the chunker (and chunk ids) stay the base model's."""
        return encoder_for(self.home.root, store.embedding) or embedder

    def _with_encoder(self, changeset: Changeset) -> Changeset:
        if changeset.encoder is None:
            found = self.encoder(changeset.embedding)
            changeset.encoder = found[1] if found else None
        return changeset

    def _publish(self, store: Store, changeset: Changeset) -> int:
        fault("hub:publish")
        folder = self._packs(store.name) / pack_name(changeset.base_version, changeset.version)
        fault("hub:before-pack")
        if changeset.base_version == 0:
            changeset.snapshot = True
        try:
            write_pack(self._with_encoder(changeset), folder, self.home.signing_key)
        except OSError as exc:  # a full disk: write_pack left no half pack, and nothing is published
            raise StorageError.during(
                f"Writing the pack of version {changeset.version} of {store.name!r}", exc
            ) from exc
        fault("hub:after-pack")
        version = store.apply(changeset, meta={PUBLISHED_AT: timestamp()})
        self._record_version(store)
        log.info("published %s version %d", store.name, version)
        return version

    def _record_version(self, store: Store) -> None:
        """The metadata's ``versions`` row of the store's version, from what its apply committed with the rows.

        The row lives in another database (``hub.sqlite`` or PostgreSQL), so it cannot share the apply's
        transaction; its publish time does, and the row is written again from the store — after every apply,
        and by the next writer under the lock — so a kill between the two never loses it. A version published
        before its time was kept in the store has nothing to rebuild from and is left as recorded.
        """
        published_at = store.get_meta(PUBLISHED_AT)
        if published_at is not None:
            self.home.metadata().record_version(store.name, store.version, store.counts()[1], published_at)

    def _packs(self, name: str) -> Path:
        folder = ensure_private_dir(self.home.packs_dir / name)
        return folder

    def _drop_orphans(self, store: Store) -> None:
        """Remove packs of versions the store never reached (a crash between pack and apply), and temp folders
        of writers that died; a live writer's temp folder (``hub serve`` building a snapshot) is left alone."""
        for folder in self._packs(store.name).iterdir():
            versions = pack_versions(folder.name)
            temp = _TEMP_PACK.fullmatch(folder.name)
            if (temp and not pid_alive(int(temp.group(1)))) or (versions is not None and versions[1] > store.version):
                log.warning("removing unpublished pack %s", folder)
                shutil.rmtree(folder, ignore_errors=True)

    # -- serving ------------------------------------------------------------------------------

    def pack_for(self, name: str, have: int) -> Path | None:
        """The smallest pack that takes a client from ``have`` to the latest version (None: up to date)."""
        store = self.store(name)
        try:
            current = store.version
            if have == current:
                return None
            with self._lock:
                if 0 < have < current:
                    delta = self._delta(store.name, have, current)
                    if delta is not None:
                        return delta
                return self._snapshot(store, current)
        finally:
            store.close()

    def _snapshot(self, store: Store, version: int) -> Path:
        """The snapshot pack of the latest version, built once from one read transaction.

        The folder is named after the version the snapshot actually read, not ``version`` (read a moment
        earlier): if another process published in between, the pack is the newer version, named as such,
        so a pack's name, its manifest and its rows always agree.
        """
        folder = self._packs(store.name) / pack_name(0, version)
        if folder.is_dir():
            return folder
        changeset = store.snapshot()
        folder = self._packs(store.name) / pack_name(0, changeset.version)
        if not folder.is_dir():
            self._write_cached(changeset, folder)
        return folder

    def _delta(self, name: str, have: int, current: int) -> Path | None:
        """The cached delta have→current, squashing the per-version chain once if needed."""
        packs = self._packs(name)
        folder = packs / pack_name(have, current)
        if folder.is_dir():
            return folder
        links = [packs / pack_name(v - 1, v) for v in range(have + 1, current + 1)]
        if not all(link.is_dir() for link in links):
            return None  # history was pruned: a snapshot it is
        key = self.home.public_key
        chain = [read_pack(link, key)[1] for link in links]
        self._write_cached(squash(chain), folder)
        return folder

    def _write_cached(self, changeset: Changeset, folder: Path) -> None:
        """Write a pack that only caches what is published (a snapshot, a squashed delta).

        Two ``hub serve`` processes of one home may build the same one at once (the thread lock covers one
        process). Both packs are signed by this hub and carry the same rows, so the one that lands second keeps
        the first's instead of failing the request (its rename onto a full folder: ``Directory not empty``).
        """
        try:
            write_pack(self._with_encoder(changeset), folder, self.home.signing_key)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (folder / "manifest.sig").is_file():
                raise
            log.info("pack %s was built by another process meanwhile: serving that one", folder.name)

    def public_packs_dir(self, name: str) -> Path:
        return self._packs(check_collection_name(name))
