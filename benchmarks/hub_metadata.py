"""Cost of a hub token check (every hub request makes one) through SQLAlchemy Core, beside the raw sqlite3 code
it replaced, measured in the same run; and on PostgreSQL when a URL is given.

    .venv/bin/python benchmarks/hub_metadata.py [--postgres postgresql://user@127.0.0.1:5432/db] [--n 2000]

The baseline is the previous implementation's work, written out: a new sqlite3 connection with its pragmas, a
deferred transaction, the token row and its scopes. PostgreSQL needs a running server (the tests start a
throwaway one: tests/hub/test_hub_postgres.py).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from outpost.hub.home import HubHome
from outpost.hub.tokens import Tokens, _hash


def _timed(call: Callable[[], object], n: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds over ``n`` calls, after a warm-up."""
    for _ in range(min(50, n)):
        call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def _raw_sqlite(path: Path, secret: str) -> Callable[[], object]:
    """What ``Tokens.authenticate`` did before SQLAlchemy (one connection per transaction, as now)."""

    def check() -> object:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            conn.execute("BEGIN DEFERRED")
            row = conn.execute(
                "SELECT id FROM tokens WHERE hash = ? AND revoked_at IS NULL", (_hash(secret),)
            ).fetchone()
            token = conn.execute("SELECT * FROM tokens WHERE id = ?", (row[0],)).fetchone()
            scopes = conn.execute("SELECT kind, name, right FROM scopes WHERE token_id = ?", (row[0],)).fetchall()
            conn.execute("COMMIT")
            return token, scopes
        finally:
            conn.close()

    return check


def _home(folder: Path, url: str | None) -> tuple[Tokens, str]:
    home = HubHome.at(folder, url)
    home.init()
    tokens = Tokens(home)
    secret, _ = tokens.create("bench", ["docs", "more"], feedback=["docs"])
    return tokens, secret


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="a postgresql:// URL of an empty database")
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        tokens, secret = _home(Path(folder), None)
        rows = [
            (
                "raw sqlite3 (previous code, baseline)",
                _timed(_raw_sqlite(tokens.hub.root / "hub.sqlite", secret), args.n),
            ),
            ("SQLAlchemy Core on SQLite", _timed(lambda: tokens.authenticate(secret), args.n)),
        ]
        if args.postgres:
            pg_tokens, pg_secret = _home(Path(folder) / "pg", args.postgres)
            rows.append(("SQLAlchemy Core on PostgreSQL", _timed(lambda: pg_tokens.authenticate(pg_secret), args.n)))
    print(f"token check, {args.n} calls")
    for name, (p50, p99) in rows:
        print(f"  {name:40s} p50 {p50:6.3f} ms   p99 {p99:6.3f} ms")


if __name__ == "__main__":
    main()
