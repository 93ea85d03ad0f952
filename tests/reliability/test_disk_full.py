"""A full disk during ingest, sync and hub publish: one clear error, the store still at its old version, no debris,
and the space given back (the next run, with room, completes).

The disk is a small tmpfs mounted under the test's own tmp folder (root only; CI runs as root on Debian) and
unmounted in a ``finally``. A ballast file fills it to just below what the operation needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubkit import HubServer
from outpost import Outpost
from outpost.errors import StorageError
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.sync import sync_hub
from reliability._kit import changeset, expected_state, make_hub, publish, record, store_state


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MB tmpfs at ``tmp_path/disk``, unmounted afterwards whatever happens."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free on ``disk``."""
    ballast = disk / "ballast"
    free = shutil.disk_usage(disk).free
    with ballast.open("wb") as fh:
        fh.truncate(0)
        block = b"\0" * 2**20
        remaining = max(free - leave, 0)
        while remaining > 0:
            remaining -= fh.write(block[: min(len(block), remaining)])
    return ballast


def used_without(disk: Path, ballast: Path) -> int:
    return sum(f.stat().st_size for f in disk.rglob("*") if f.is_file() and f != ballast)


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_sync_onto_a_full_disk_fails_that_collection_clearly_and_keeps_the_rest(
    tmp_path: Path, small_disk: Path
) -> None:
    hub = make_hub(tmp_path / "hub-home", "big", 6000, versions=1)
    publish(hub, "small", 100, 1)
    token = Tokens(hub.home).create("d", ["big", "small"])[0]
    client = small_disk / "client"
    with HubServer(hub.home.root.parent) as server:
        config = HubConfig(hub_name(server.url), server.url, token)
        assert not sync_hub(client, config).failed
        publish(hub, "big", 6000, 2)
        publish(hub, "small", 100, 2)
        ballast = fill(small_disk, 256 * 1024)  # far less than the big delta's pack and rows need
        before = used_without(small_disk, ballast)
        report = sync_hub(client, config)
        assert set(report.failed) == {"big"} and "small" in report.updated  # one failure never stops the rest
        assert "free some disk space" in report.failed["big"]
        assert store_state(client / "collections", "big") == (1, expected_state(1, 6000))  # opens, old version
        assert not any((client / "staging").rglob("*.parquet*")), "the failed pack's download was left behind"
        grown = used_without(small_disk, ballast) - before
        assert grown < 256 * 1024, f"{grown} bytes of the failed sync stayed on the disk"
        ballast.unlink()
        assert not sync_hub(client, config).failed  # room again: the same sync completes
        assert store_state(client / "collections", "big") == (2, expected_state(2, 6000))
    record("disk full: sync", failed_collection="big", other_collection_synced=True, bytes_left_behind=max(grown, 0))


def _notes(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        words = " ".join(f"term{(i * 13 + j) % 251}" for j in range(300))
        (root / f"note{i}.txt").write_text(f"Note {i}. {words}\n")
    return root


@pytest.mark.slow
def test_ingest_onto_a_full_disk_fails_clearly_and_keeps_the_old_version(tmp_path: Path, small_disk: Path) -> None:
    home = small_disk / "home"
    op = Outpost(home=home)
    op.ingest(_notes(tmp_path / "v1", 3), collection="notes")
    store = op.store("notes")
    old = (store.version, store.counts())
    ballast = fill(small_disk, 32 * 1024)
    more = _notes(tmp_path / "v2", 12)  # ~36 chunks: their rows, FTS entries and WAL pages need more than 32 KB
    with pytest.raises(StorageError, match="free some disk space"):
        op.ingest(more, collection="notes")
    assert (store.version, store.counts()) == old
    reopened = Outpost(home=home).store("notes")  # a fresh connection opens it, at the old version
    assert (reopened.version, reopened.counts()) == old
    ballast.unlink()
    assert Outpost(home=home).ingest(more, collection="notes").version == old[0] + 1
    record("disk full: ingest", error="StorageError", old_version_kept=True)


def test_hub_publish_onto_a_full_disk_publishes_nothing_and_leaves_no_half_pack(small_disk: Path) -> None:
    hub = make_hub(small_disk / "hub-home", "big", 3000, versions=1)
    packs = HubHome.at(small_disk / "hub-home").packs_dir / "big"
    before = files_under(packs)
    ballast = fill(small_disk, 64 * 1024)
    store = hub.store("big")
    try:
        with pytest.raises(StorageError, match="free some disk space"):
            hub.publish(store, changeset("big", 2, 3000, 1))
        assert store.version == 1
    finally:
        store.close()
    assert files_under(packs) == before, "a half-written pack was left behind"
    assert Hub(hub.home).pack_for("big", 0).name == "snapshot-1"
    ballast.unlink()
    publish(hub, "big", 3000, 2)
    assert store_state(hub.home.collections_dir, "big") == (2, expected_state(2, 3000))
    record("disk full: hub publish", error="StorageError", half_packs_left=0)


def test_the_small_disk_is_really_small(small_disk: Path) -> None:
    """The fixture's premise: writing past the tmpfs size fails with ENOSPC (otherwise the tests above prove
    nothing)."""
    with pytest.raises(OSError) as caught, (small_disk / "too-big").open("wb") as fh:
        fh.write(os.urandom(25 * 2**20))
        fh.flush()
    assert caught.value.errno == 28
