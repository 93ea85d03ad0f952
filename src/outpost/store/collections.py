"""The collections in one folder: list, check, open, delete — the one place that knows their layout.

A collection is ``<folder>/<name>/store.sqlite``; anything else in the folder (a stray file, a folder without a
store, a symbolic link, a name outside the grammar) is not one and is never listed or opened. Names are checked
by ``outpost.names`` and joined with ``safe_join`` (DESIGN §11), so a name from a hub, an HTTP request or a
manifest cannot reach outside the folder. A laptop's home (``$OUTPOST_HOME/collections``) and a hub's
(``hub/collections``, opened ``durable``) use the same registry.

    >>> collections = Collections(settings.collections_dir, exact_below=settings.exact_search_below)
    >>> collections.names()                     # ['handbook', 'ops']
    >>> store = collections.open("handbook")   # CollectionNotFoundError if there is none
    >>> collections.delete("ops")
"""

from __future__ import annotations

import shutil
from pathlib import Path

from outpost.errors import CollectionNotFoundError
from outpost.names import is_valid_name, safe_join
from outpost.store.sqlite import STORE_FILE, Store, check_collection_name

__all__ = ["Collections", "check_collection_name"]


class Collections:
    """Collections under ``folder``; ``durable`` stores (a hub's) commit with ``synchronous=FULL``."""

    def __init__(self, folder: Path, exact_below: int = 5000, durable: bool = False) -> None:
        self.folder = folder
        self.exact_below = exact_below
        self.durable = durable

    @classmethod
    def in_home(cls, home: Path, exact_below: int = 5000) -> Collections:
        """A laptop's collections: ``$OUTPOST_HOME/collections`` (``Settings.collections_dir``)."""
        return cls(home / "collections", exact_below)

    def path(self, name: str) -> Path:
        """The collection's folder (it may not exist yet); a bad name or one leaving ``folder`` is refused."""
        return safe_join(self.folder, check_collection_name(name), what="collection name")

    def exists(self, name: str) -> bool:
        """On disk right now: a valid name, a real folder (not a link), a store file inside."""
        if not is_valid_name(name):
            return False
        folder = self.folder / name
        return not folder.is_symlink() and (folder / STORE_FILE).is_file()

    def names(self) -> list[str]:
        """Every collection, sorted; what is not one (see the module's docstring) is left out silently."""
        if not self.folder.is_dir():
            return []
        return sorted(entry.name for entry in self.folder.iterdir() if self.exists(entry.name))

    def open(self, name: str, create: bool = False) -> Store:
        """The collection's store (the caller closes it); a missing one is ``CollectionNotFoundError``
        unless ``create``, which makes its folder (0700)."""
        if not create and not self.exists(name):
            self.path(name)  # a name outside the grammar is a ConfigError, not "no such collection"
            raise CollectionNotFoundError(name)
        try:
            return Store.open(self.folder, name, create, self.exact_below, self.durable)
        except FileNotFoundError:  # deleted since the check above
            raise CollectionNotFoundError(name) from None

    def delete(self, name: str) -> None:
        """Remove the collection's folder and everything in it; close its open stores first."""
        folder = self.path(name)
        if not self.exists(name):
            raise CollectionNotFoundError(name)
        shutil.rmtree(folder)
