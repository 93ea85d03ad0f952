"""Hub metadata on SQLite and on a real PostgreSQL; two `outpost hub serve` processes sharing one PostgreSQL.

The PostgreSQL server is real and throwaway: Debian's binaries (``/usr/lib/postgresql/*/bin``), ``initdb`` into a
fresh temporary folder, listening on a free loopback port only, stopped and deleted afterwards; the system's own
cluster is never touched. PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user
(``runuser``) in a folder that user owns. Without the binaries the PostgreSQL cases skip, except in CI
(``CI=true``), where ``.ci/run`` installs them and a skip would hide a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from hubkit import free_port, outpost_cli
from outpost.errors import AuthError
from outpost.hub.home import HubHome
from outpost.hub.learning import examples, store_feedback, untrained_count
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.ingest.chunker import Chunker
from test_hub_sync import client_sync, state, write_docs

pytest.importorskip("psycopg", reason="the PostgreSQL extra (pip install 'outpost[postgres]') is not installed")


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL on 127.0.0.1; ``database()`` makes a fresh database per test."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="outpost-pg-"))  # /tmp: reachable by the server's own user
        self.port = free_port()
        self.user = "postgres" if os.getuid() == 0 else None
        self.databases = 0

    def _run(self, *command: str) -> None:
        # as root: drop to the server's own user for this command (subprocess does it; runuser needs PAM)
        as_user = {"user": self.user, "group": self.user, "extra_groups": []} if self.user else {}
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder, **as_user)
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stdout}{result.stderr}")

    def start(self) -> None:
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        data = self.folder / "data"
        self._run(str(self.bin / "initdb"), "-D", str(data), "-U", "outpost", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.folder / "log")
        self._run(str(self.bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://outpost@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        import psycopg

        self.databases += 1
        name = f"hub{self.databases}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL binaries missing in CI: .ci/run installs Debian's postgresql")
        pytest.skip("PostgreSQL binaries not installed (apt-get install postgresql)")
    server = PostgresServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def hub_home(request: pytest.FixtureRequest, tmp_path: Path) -> HubHome:
    """A hub home whose metadata is in hub.sqlite or in a fresh PostgreSQL database."""
    url = request.getfixturevalue("postgres").database() if request.param == "postgresql" else None
    home = HubHome.at(tmp_path / "hub-home", url)
    home.init()
    return home


def test_tokens_scopes_and_revocation(hub_home: HubHome) -> None:
    tokens = Tokens(hub_home)
    secret, info = tokens.create("laptop", read=["docs"], feedback=["docs"], models=["smol"])
    expected = [("collection", "docs", "feedback"), ("collection", "docs", "read"), ("model", "smol", "read")]
    assert info.scopes == expected
    assert info.created_at and info.revoked_at is None
    admin_secret, _ = tokens.create("ops", admin=True)
    assert tokens.authenticate(secret).name == "laptop" and tokens.authenticate(admin_secret).admin
    assert [t.name for t in tokens.list()] == ["laptop", "ops"]
    with pytest.raises(AuthError):
        tokens.authenticate(secret + "x")
    [revoked] = tokens.revoke("laptop")
    assert revoked.revoked_at is not None
    with pytest.raises(AuthError):
        tokens.authenticate(secret)
    assert tokens.revoke(str(tokens.authenticate(admin_secret).id))[0].name == "ops"  # by id


def test_a_scope_outside_the_schema_is_refused(hub_home: HubHome) -> None:
    """The CHECK constraints hold on both engines: a right the hub does not know never gets stored."""
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        hub_home.metadata().create_token("bad", "hash-bad", False, [("collection", "docs", "delete")])
    assert Tokens(hub_home).list() == []  # the token row went with the failed transaction


def test_feedback_counts_once_and_stops_counting_when_its_token_is_revoked(hub_home: HubHome) -> None:
    tokens = Tokens(hub_home)
    _, laptop = tokens.create("laptop", read=["docs"], feedback=["docs"])
    vector = np.arange(4, dtype=np.float32) / 4
    item = {"id": "f1", "query_vector": vector.tolist(), "query": "when?", "shown": ["c1", "c2"]}
    item["source_votes"] = {"c1": 1, "c2": 0}
    assert store_feedback(hub_home, "docs", laptop.id, [item]) == 1
    assert store_feedback(hub_home, "docs", laptop.id, [item]) == 0  # a retried upload adds nothing
    assert store_feedback(hub_home, "docs", None, [{**item, "id": "f2", "answer_vote": 1}]) == 1
    assert untrained_count(hub_home, "docs") == 2
    [first, second] = examples(hub_home, "docs")
    assert first.positives == ("c1",) and first.negatives == ("c2",) and np.array_equal(first.query, vector)
    assert second.source == ""  # the operator's own vote
    tokens.revoke("laptop")
    assert untrained_count(hub_home, "docs") == 1 and len(examples(hub_home, "docs")) == 1
    hub_home.metadata().mark_trained("docs", 1)
    assert untrained_count(hub_home, "docs") == 0


def test_versions_and_adapters(hub_home: HubHome) -> None:
    meta = hub_home.metadata()
    meta.record_version("docs", 1, 10)
    meta.record_version("docs", 1, 12)  # published again (a retried publish): replaced, not duplicated
    matrix = np.eye(3, dtype=np.float32)
    assert meta.next_adapter_version("docs", 1) == 1
    meta.save_adapter("docs", 1, matrix.tobytes(), 3, {"after": 0.5}, published_in=2)
    meta.save_adapter("docs", 2, (2 * matrix).tobytes(), 3, {"after": 0.6}, published_in=3)
    meta.save_adapter("docs", 1, matrix.tobytes(), 3, {"rollback_from": 2}, published_in=4)  # re-published
    assert meta.next_adapter_version("docs", 1) == 3
    version, raw, dim = meta.previous_adapter("docs", before=2) or (0, b"", 0)
    assert (version, dim) == (1, 3) and np.array_equal(np.frombuffer(raw, np.float32).reshape(3, 3), matrix)
    assert meta.previous_adapter("docs", before=1) is None


def test_an_unreachable_or_unsupported_database_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No server on the port (nothing listens there; no PostgreSQL needed): exit code 13 and one line naming the
    database, its password hidden; a URL of another engine is refused as a setting."""
    monkeypatch.setenv("OUTPOST_HUB_DB", f"postgresql://outpost:hunter2@127.0.0.1:{free_port()}/hub")
    result = outpost_cli("hub", "init", home=tmp_path / "home")
    assert result.returncode == 13, result.stderr
    assert "metadata database postgresql://outpost:***@127.0.0.1" in result.stderr and "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    monkeypatch.setenv("OUTPOST_HUB_DB", "mysql://outpost@127.0.0.1/hub")
    result = outpost_cli("hub", "token", "list", home=tmp_path / "home")
    assert result.returncode != 0 and "must be a postgresql:// URL" in result.stderr, result.stderr


def test_processes_opening_a_new_postgres_database_at_once_create_its_schema_once(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Migrations take an advisory lock and read the version again under it: four processes starting on one
    empty database all succeed, and the schema version is stamped once."""
    url = postgres.database()
    code = (
        "import sys; from pathlib import Path; from outpost.hub.metadata import open_metadata; "
        "open_metadata(sys.argv[1], Path(sys.argv[2])).token(1)"
    )
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(tmp_path / f"unused-{i}.sqlite")], stderr=subprocess.PIPE
        )
        for i in range(4)
    ]
    assert [p.wait(timeout=120) for p in starts] == [0, 0, 0, 0], [p.stderr.read() for p in starts if p.stderr]
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version FROM outpost_schema").fetchall() == [(2,)]
        assert conn.execute("SELECT count(*) FROM tokens").fetchone() == (0,)
    assert not list(tmp_path.glob("unused-*"))  # no SQLite file was made on the side


def _serve(home: Path, url: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "OUTPOST_HOME": str(home), "OUTPOST_HUB_DB": url, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "outpost", "hub", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True), f"http://127.0.0.1:{port}"


def _wait(process: subprocess.Popen[str], url: str) -> None:
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.2)
    raise AssertionError("the hub did not start")


def _collections(url: str, token: str) -> int:
    response = httpx.get(f"{url}/v1/collections", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return response.status_code


@pytest.mark.slow
def test_two_hub_servers_share_one_postgres_and_one_pack_folder(
    postgres: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    embedder,  # type: ignore[no-untyped-def]
) -> None:
    url = postgres.database()
    monkeypatch.setenv("OUTPOST_HUB_DB", url)  # for the CLI processes below
    home = tmp_path / "hub"
    hub_home = HubHome.at(home, url)
    key = hub_home.init()
    hub = Hub(hub_home)
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    docs = write_docs(tmp_path / "docs", 1)
    assert hub.ingest([docs], "docs", embedder, chunker, sync=True).version == 1
    assert not (hub_home.root / "hub.sqlite").exists()  # the metadata went to PostgreSQL

    servers = [_serve(home, url), _serve(home, url)]
    try:
        for process, server in servers:
            _wait(process, server)
        (_, one), (_, two) = servers
        # a token made by another process (the CLI) works on both running servers, without a restart
        made = outpost_cli(
            "hub", "token", "create", "--name", "laptop", "--read", "docs", "--feedback", "docs", home=home
        )
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert _collections(one, secret) == _collections(two, secret) == 200
        assert _collections(one, "opk_not-a-token") == 401

        # what one process publishes into the shared pack folder, both servers serve (behind one address, a
        # laptop could meet either; here each laptop keeps to one, since a laptop pins its collection to a hub URL)
        laptop, other = tmp_path / "laptop", tmp_path / "other-laptop"
        assert client_sync(laptop, one, secret, key).updated == {"docs": (0, 1, "snapshot-1")}
        write_docs(docs, 2)
        assert hub.ingest([docs], "docs", embedder, chunker, sync=True).version == 2
        assert client_sync(laptop, one, secret, key).updated == {"docs": (1, 2, "delta-1-2")}
        assert client_sync(other, two, secret, key).updated == {"docs": (0, 2, "snapshot-2")}
        assert state(laptop) == state(other)

        # a vote sent to one server is the other's too, and the trainer's (in this process) at once
        chunk = sorted(row[0] for row in state(laptop)[1] if len(row) > 2)[0]
        item = {"id": "vote-1", "query_vector": [0.1] * embedder.identity.dimension, "shown": [chunk]}
        item["source_votes"] = {chunk: 1}
        for server in (two, one):  # the same item twice: stored once
            response = httpx.post(
                f"{server}/v1/collections/docs/feedback",
                json={"items": [item]},
                headers={"Authorization": f"Bearer {secret}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
        assert response.json()["duplicates"] == 1 and untrained_count(hub_home, "docs") == 1

        revoked = outpost_cli("hub", "token", "revoke", "laptop", home=home)
        assert revoked.returncode == 0, revoked.stderr
        assert _collections(one, secret) == _collections(two, secret) == 401
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(timeout=30)
