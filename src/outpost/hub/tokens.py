"""Hub tokens: 32 random bytes shown once, stored as sha256, scoped to collections.

A scope is ``(kind, name, right)``. A token sees a collection only with a ``read`` (or ``write``)
scope on it, or as admin; anything out of scope is answered exactly like a collection that does not
exist, so names do not leak. Uploading feedback is its own right (``feedback``): votes steer the
adapter every outpost receives, so a laptop that may read a collection may not vote on it unless
the hub's operator says so.

Lookups (``authenticate``, ``get``, ``list``) run in a read transaction: they never take SQLite's
write lock, so a long write elsewhere cannot make a request's token check fail.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from outpost.errors import AuthError, ConfigError
from outpost.hub.home import HubHome

__all__ = ["TokenInfo", "Tokens"]

PREFIX = "opk_"
RIGHTS = {"read": {"read", "write"}, "write": {"write"}, "feedback": {"feedback"}}  # a right → the scopes that grant it


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    admin: bool
    created_at: str
    revoked_at: str | None
    scopes: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, right)

    def can(self, right: str, name: str, kind: str = "collection") -> bool:
        if self.admin:
            return True
        rights = RIGHTS[right]
        return any(k == kind and n == name and r in rights for k, n, r in self.scopes)


class Tokens:
    def __init__(self, hub: HubHome) -> None:
        self.hub = hub

    def create(
        self,
        name: str,
        read: Sequence[str] = (),
        write: Sequence[str] = (),
        admin: bool = False,
        models: Sequence[str] = (),
        feedback: Sequence[str] = (),
    ) -> tuple[str, TokenInfo]:
        """A new token; the secret is returned once and never stored."""
        if not name:
            raise ConfigError("A token needs a --name")
        secret = PREFIX + secrets.token_urlsafe(32)
        scopes = [("collection", c, "read") for c in read] + [("collection", c, "write") for c in write]
        scopes += [("collection", c, "feedback") for c in feedback] + [("model", m, "read") for m in models]
        with self.hub.connect() as db:
            cur = db.execute(
                "INSERT INTO tokens (name, hash, admin) VALUES (?, ?, ?)", (name, _hash(secret), int(admin))
            )
            token_id = int(cur.lastrowid or 0)
            db.executemany("INSERT OR IGNORE INTO scopes VALUES (?, ?, ?, ?)", [(token_id, *s) for s in scopes])
        return secret, self.get(token_id)

    def get(self, token_id: int) -> TokenInfo:
        with self.hub.read() as db:
            return _token(db, token_id)

    def list(self) -> list[TokenInfo]:
        with self.hub.read() as db:
            return [_token(db, r[0]) for r in db.execute("SELECT id FROM tokens ORDER BY id").fetchall()]

    def revoke(self, name_or_id: str) -> list[TokenInfo]:
        """Revoke by id or by name (every live token of that name)."""
        with self.hub.connect() as db:
            rows = db.execute(
                "SELECT id FROM tokens WHERE revoked_at IS NULL AND (name = ? OR CAST(id AS TEXT) = ?)",
                (name_or_id, name_or_id),
            ).fetchall()
            if not rows:
                raise ConfigError(f"No live token named or numbered {name_or_id!r}: see `outpost hub token list`")
            db.executemany("UPDATE tokens SET revoked_at = datetime('now') WHERE id = ?", [(r[0],) for r in rows])
        return [self.get(r[0]) for r in rows]

    def authenticate(self, secret: str | None) -> TokenInfo:
        """The live token for ``secret``; missing, unknown and revoked all fail the same way."""
        if secret:
            with self.hub.read() as db:
                row = db.execute(
                    "SELECT id FROM tokens WHERE hash = ? AND revoked_at IS NULL", (_hash(secret),)
                ).fetchone()
                if row is not None:
                    return _token(db, row[0])
        raise AuthError("A valid, unrevoked hub token is required")


def _token(db: sqlite3.Connection, token_id: int) -> TokenInfo:
    row = db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
    if row is None:
        raise ConfigError(f"No token with id {token_id}")
    scopes = db.execute("SELECT kind, name, right FROM scopes WHERE token_id = ?", (token_id,)).fetchall()
    return TokenInfo(
        row["id"], row["name"], bool(row["admin"]), row["created_at"], row["revoked_at"], [tuple(s) for s in scopes]
    )
