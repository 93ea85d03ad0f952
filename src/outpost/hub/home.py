"""The hub's home: signing key, metadata database, collections (stores) and packs.

::

    $OUTPOST_HOME/hub/
      signing-key.pem          Ed25519 private key (0600); its public half is what clients pin
      hub.sqlite               tokens, their scopes, published versions, feedback, adapters
                               (or a PostgreSQL database: ``OUTPOST_HUB_DB``, see ``metadata.py``)
      collections/<name>/      one Store per collection (the current version)
      packs/<name>/            delta-<v-1>-<v> per published version, snapshots and squashed deltas on demand

The metadata (``HubHome.metadata()``, ``metadata.py``) is one schema on SQLite or PostgreSQL; SQLAlchemy is
imported only when it is first used, so commands that never touch it start without it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from outpost.errors import ConfigError
from outpost.home import ensure_private_dir
from outpost.packs.signing import generate_key, load_private_key, public_key_text

if TYPE_CHECKING:
    from outpost.hub.metadata import HubMetadata

__all__ = ["HubHome"]


@dataclass(frozen=True)
class HubHome:
    """``root`` holds the key, collections and packs; ``db_url`` (``postgresql://…``) the metadata, when set."""

    root: Path
    db_url: str | None = field(default=None, repr=False)  # may carry a password

    @classmethod
    def at(cls, home: Path, db_url: str | None = None) -> HubHome:
        return cls(home / "hub", db_url or None)

    @property
    def key_path(self) -> Path:
        return self.root / "signing-key.pem"

    @property
    def collections_dir(self) -> Path:
        return self.root / "collections"

    @property
    def packs_dir(self) -> Path:
        return self.root / "packs"

    def exists(self) -> bool:
        return self.key_path.is_file()

    def init(self) -> str:
        """Create the hub home and its signing key (once); returns the public key text."""
        if not self.exists():
            ensure_private_dir(self.root)
            generate_key(self.key_path)
        self.metadata(fresh=True)  # a new (or re-created) home always gets its tables
        return self.public_key

    def require(self) -> HubHome:
        if not self.exists():
            raise ConfigError(f"No hub at {self.root}: run `outpost hub init` first")
        return self

    @cached_property
    def signing_key(self) -> Ed25519PrivateKey:
        return load_private_key(self.require().key_path)

    @property
    def public_key(self) -> str:
        return public_key_text(self.signing_key)

    def metadata(self, fresh: bool = False) -> HubMetadata:
        """Tokens, versions, feedback and adapters: PostgreSQL at ``db_url``, else ``hub.sqlite`` here; migrated
        once per process (``fresh``: check the schema again)."""
        from outpost.hub.metadata import open_metadata

        return open_metadata(self.db_url, self.root / "hub.sqlite", fresh)
