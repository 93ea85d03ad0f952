"""The one collections registry (``outpost/store/collections.py``): list, open, delete, for laptops and hubs alike."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from outpost import Outpost
from outpost.errors import CollectionNotFoundError, ConfigError
from outpost.store.collections import Collections


def _make(collections: Collections, *names: str) -> None:
    for name in names:
        collections.open(name, create=True).close()


def test_only_real_collections_are_listed_and_opened(tmp_path: Path) -> None:
    collections = Collections(tmp_path / "collections")
    assert collections.names() == []  # no folder yet: nothing, and nothing created
    assert not (tmp_path / "collections").exists()
    _make(collections, "beta", "alpha", "x" * 128)
    folder = tmp_path / "collections"
    (folder / "stray.txt").write_text("not a collection")
    (folder / "half-made").mkdir()  # a folder without a store
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "store.sqlite").write_text("")  # outside the name grammar
    elsewhere = Collections(tmp_path / "elsewhere")
    _make(elsewhere, "outside")
    os.symlink(tmp_path / "elsewhere" / "outside", folder / "linked")  # a link is never a collection
    assert collections.names() == ["alpha", "beta", "x" * 128]
    assert collections.exists("alpha") and not collections.exists("linked") and not collections.exists("half-made")
    with pytest.raises(ConfigError, match="Refused collection name 'linked': it would leave"):
        collections.open("linked")
    with pytest.raises(ConfigError, match="it would leave"):
        collections.delete("linked")
    assert (tmp_path / "elsewhere" / "outside" / "store.sqlite").is_file()  # what the link points to is untouched


def test_bad_names_are_refused_before_touching_the_disk(tmp_path: Path) -> None:
    collections = Collections(tmp_path / "collections")
    for bad in ["../etc", "a/b", "", ".hidden", "x" * 129, "a:b"]:
        with pytest.raises(ConfigError, match="Invalid collection name"):
            collections.open(bad, create=True)
        with pytest.raises(ConfigError, match="Invalid collection name"):
            collections.open(bad)
        with pytest.raises(ConfigError, match="Invalid collection name"):
            collections.delete(bad)
        assert not collections.exists(bad)
    assert not (tmp_path / "collections").exists()


def test_open_create_and_delete(tmp_path: Path) -> None:
    collections = Collections(tmp_path / "collections", durable=True)
    with pytest.raises(CollectionNotFoundError, match="No collection named 'docs'"):
        collections.open("docs")
    store = collections.open("docs", create=True)
    assert store.folder == tmp_path / "collections" / "docs" and store.version == 0
    assert (store.folder.stat().st_mode & 0o777) == 0o700
    store.close()
    collections.delete("docs")
    assert collections.names() == [] and not (tmp_path / "collections" / "docs").exists()
    with pytest.raises(CollectionNotFoundError):
        collections.delete("docs")


def test_the_facade_lists_and_deletes_through_the_registry(home: Path) -> None:
    op = Outpost()
    op.store("notes", create=True)
    (home / "collections" / "stray").mkdir()
    assert [info.name for info in op.collections()] == ["notes"] and op.has_collection("notes")
    op.delete_collection("notes")
    assert op.collections() == [] and not op.has_collection("notes")
    with pytest.raises(CollectionNotFoundError):
        op.delete_collection("notes")
    assert Collections.in_home(home).folder == op.settings.collections_dir
