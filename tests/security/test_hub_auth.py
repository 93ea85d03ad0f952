"""The hub's auth matrix: every route, enumerated from the app itself, against every kind of caller.

Callers: no token, a wrong token, a revoked one, a token with no scope on the thing asked for, a
read-only token, and a token with the ``feedback`` right. Out of scope must answer exactly like
"does not exist" (same status, same body once the name is swapped), so names do not leak. A token
that may read a collection but not vote on it gets 403 on feedback (it knows the collection exists;
a clear refusal says what to ask the hub's operator for). A route added to the app without an entry
in ``MATRIX`` fails ``test_every_route_is_in_the_matrix``.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from starlette.routing import Route

from hubkit import ServerThread
from outpost.feedback import FeedbackQueue
from outpost.hub import create_app
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.models.registry import Registry
from outpost.settings import Settings
from outpost.sync import sync_hub
from security.hubworld import DIM, item, ship_encoder, synthetic_hub, tiny_gguf


@dataclass(frozen=True)
class Case:
    """How to call one route as an allowed caller, and what kind of scope protects it."""

    params: dict[str, str] = field(default_factory=dict)
    ok: int = 200
    public: bool = False  # /health only
    scope: str = ""  # "collection" or "model": the {name} it reads is checked against the token's scopes
    lists: str = ""  # a listing filtered by scope ("collection" or "model")
    feedback: bool = False  # needs the feedback right, not just read


PACK = {"name": "docs", "pack": "snapshot-1", "file": "manifest.json"}
ENCODER = {"name": "docs", "sha": "", "file": "encoder.json"}  # the sha once the world shipped docs' encoder
MATRIX: dict[tuple[str, str], Case] = {
    ("GET", "/health"): Case(public=True),
    ("GET", "/v1/hub"): Case(),
    ("GET", "/v1/collections"): Case(lists="collection"),
    ("GET", "/v1/collections/{name}"): Case({"name": "docs"}, scope="collection"),
    ("GET", "/v1/collections/{name}/sync"): Case({"name": "docs"}, scope="collection"),
    ("GET", "/v1/collections/{name}/packs/{pack}/{file}"): Case(PACK, scope="collection"),
    ("GET", "/v1/collections/{name}/encoders/{sha}/{file}"): Case(ENCODER, scope="collection"),
    ("POST", "/v1/collections/{name}/feedback"): Case({"name": "docs"}, scope="collection", feedback=True),
    ("GET", "/v1/models"): Case(lists="model"),
    ("GET", "/v1/models/{name}"): Case({"name": "approved"}, scope="model"),
    ("GET", "/v1/models/{name}/blob"): Case({"name": "approved"}, scope="model"),
    ("GET", "/openapi.json"): Case(),
    ("GET", "/docs"): Case(),
    ("GET", "/docs/oauth2-redirect"): Case(),
    ("GET", "/redoc"): Case(),
}
MISSING = {"collection": "nope", "model": "nomodel"}


@dataclass
class World:
    url: str
    app: Any
    tokens: dict[str, str]
    hub_home: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("hub-home")
    hub = synthetic_hub(home)
    ENCODER["sha"] = ship_encoder(hub, "docs")
    Registry(hub.home.root).pull_file(tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf"), "approved")
    tokens = Tokens(hub.home)
    made = {
        "full": tokens.create("full", ["docs"], models=["approved"], feedback=["docs"])[0],
        "readonly": tokens.create("readonly", ["docs"], models=["approved"])[0],
        "other": tokens.create("other", ["secret"], feedback=["secret"])[0],  # in scope elsewhere only
        "revoked": tokens.create("revoked", ["docs"], models=["approved"], feedback=["docs"])[0],
        "wrong": "opk_" + secrets.token_urlsafe(32),  # well-formed, never issued
    }
    tokens.revoke("revoked")
    app = create_app(Settings(home=home, hub_api_docs=True))
    with ServerThread(app) as server:
        yield World(server.url, app, made, hub.home.root)


def app_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every API route the app serves, from its OpenAPI schema (built even when it is not
    served): FastAPI >= 0.16x nests an included router's routes instead of listing them in ``app.routes``."""
    docs = {(m, route.path) for route in app.routes if isinstance(route, Route) for m in route.methods or ()}
    paths = app.openapi()["paths"]
    return {(m.upper(), path) for path, ops in paths.items() for m in ops} | {d for d in docs if d[0] != "HEAD"}


def call(world: World, key: tuple[str, str], token: str | None, **params: str) -> httpx.Response:
    method, template = key
    case = MATRIX[key]
    path = template.format(**{**case.params, **params})
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"items": [item(params.get("name", "docs"))]} if method == "POST" else None
    return httpx.request(method, world.url + path, headers=headers, json=body, timeout=10)


def test_every_route_is_in_the_matrix(world: World) -> None:
    assert app_routes(world.app) == set(MATRIX), "a hub route without an auth-matrix entry (or a stale entry)"


@pytest.mark.parametrize("key", sorted(MATRIX), ids=lambda k: f"{k[0]} {k[1]}")
def test_no_wrong_or_revoked_token_gets_in(world: World, key: tuple[str, str]) -> None:
    answers = [call(world, key, world.tokens.get(who)) for who in ("none", "wrong", "revoked")]
    if MATRIX[key].public:
        assert all(a.status_code == 200 for a in answers)
        assert set(answers[0].json()) == {"status", "version"}  # liveness and version, nothing else
        return
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.json() == {"detail": "A valid hub token is required"}
        assert answer.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("key", sorted(MATRIX), ids=lambda k: f"{k[0]} {k[1]}")
def test_an_allowed_token_gets_in(world: World, key: tuple[str, str]) -> None:
    answer = call(world, key, world.tokens["full"])
    assert answer.status_code == MATRIX[key].ok, answer.text
    if MATRIX[key].feedback:
        assert answer.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


@pytest.mark.parametrize("key", sorted(k for k, c in MATRIX.items() if c.scope), ids=lambda k: f"{k[0]} {k[1]}")
def test_out_of_scope_answers_exactly_like_does_not_exist(world: World, key: tuple[str, str]) -> None:
    case = MATRIX[key]
    real, missing = case.params["name"], MISSING[case.scope]
    out_of_scope = call(world, key, world.tokens["other"])
    absent = call(world, key, world.tokens["other"], name=missing)
    absent_for_allowed = call(world, key, world.tokens["full"], name=missing)
    assert out_of_scope.status_code == absent.status_code == absent_for_allowed.status_code == 404
    assert absent.json() == absent_for_allowed.json()
    assert out_of_scope.text.replace(repr(real), repr(missing)) == absent.text
    assert set(out_of_scope.headers) - {"date"} == set(absent.headers) - {"date"}


@pytest.mark.parametrize("key", sorted(k for k, c in MATRIX.items() if c.lists), ids=lambda k: f"{k[0]} {k[1]}")
def test_listings_show_only_what_is_in_scope(world: World, key: tuple[str, str]) -> None:
    theirs = {entry["name"] for entry in call(world, key, world.tokens["other"]).json()}
    ours = {entry["name"] for entry in call(world, key, world.tokens["full"]).json()}
    expected = {"collection": ({"secret"}, {"docs"}), "model": (set(), {"approved"})}[MATRIX[key].lists]
    assert (theirs, ours) == expected


def test_a_read_only_token_may_not_post_feedback(world: World) -> None:
    key = ("POST", "/v1/collections/{name}/feedback")
    answer = call(world, key, world.tokens["readonly"])
    assert answer.status_code == 403
    assert "--feedback docs" in answer.json()["detail"]
    with sqlite3.connect(world.hub_home / "hub.sqlite") as db:
        stored = db.execute(
            "SELECT count(*) FROM feedback f JOIN tokens t ON t.id = f.token_id WHERE t.name = 'readonly'"
        ).fetchone()[0]
    assert stored == 0
    assert call(world, ("GET", "/v1/collections/{name}"), world.tokens["readonly"]).status_code == 200


def test_unknown_paths_are_401_without_a_token_and_404_with_one(world: World) -> None:
    assert httpx.get(world.url + "/v1/nothing-here", timeout=10).status_code == 401  # routes do not leak either
    authed = httpx.get(world.url + "/v1/nothing-here", headers={"Authorization": f"Bearer {world.tokens['full']}"})
    assert authed.status_code == 404


def test_api_docs_are_off_by_default(tmp_path: Path) -> None:
    home = tmp_path / "hub-home"
    hub = synthetic_hub(home, ("docs",))
    secret = Tokens(hub.home).create("t", ["docs"])[0]
    app = create_app(Settings(home=home))
    assert not {p for _, p in app_routes(app)} & {"/docs", "/redoc", "/openapi.json"}
    with ServerThread(app) as server:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(server.url + path).status_code == 401
            assert httpx.get(server.url + path, headers={"Authorization": f"Bearer {secret}"}).status_code == 404


def test_token_checks_never_wait_for_the_write_lock(world: World) -> None:
    """A writer holding hub.sqlite's write lock (a long feedback upload, a publish) must not make other
    requests fail: token lookups only read. A feedback upload waiting for the lock succeeds once it is free."""
    headers = {"Authorization": f"Bearer {world.tokens['full']}"}
    writer = sqlite3.connect(world.hub_home / "hub.sqlite", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE tokens SET name = name")  # a real write: the lock is held
    upload: dict[str, httpx.Response] = {}
    try:
        poster = threading.Thread(
            target=lambda: upload.setdefault(
                "r",
                httpx.post(
                    world.url + "/v1/collections/docs/feedback",
                    headers=headers,
                    json={"items": [item()]},
                    timeout=60,
                ),
            )
        )
        poster.start()
        for _ in range(20):  # the lock stays held throughout; each GET would fail if it needed the lock
            for path in ("/v1/hub", "/v1/collections", "/v1/collections/docs", "/v1/collections/docs/sync?have=0"):
                assert httpx.get(world.url + path, headers=headers, timeout=3).status_code == 200
        assert poster.is_alive()  # the upload waits for the writer (busy timeout), it does not fail
    finally:
        time.sleep(0.2)
        writer.execute("COMMIT")
        writer.close()
    poster.join(timeout=30)
    assert upload["r"].status_code == 200 and upload["r"].json()["accepted"] == 1


def test_sync_with_a_read_only_token_syncs_packs_and_keeps_votes_queued(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client = tmp_path / "client"
    queue = FeedbackQueue(client)
    answer = queue.record("docs", "a question", np.full(DIM, 0.5, np.float32), ["docs-c0", "docs-c1"])
    queue.vote(answer, helpful=True, sources={1: True})
    with caplog.at_level(logging.WARNING, logger="outpost.sync"):
        report = sync_hub(client, HubConfig(hub_name(world.url), world.url, world.tokens["readonly"]))
    assert report.updated["docs"][1] == 2 and not report.failed  # the packs (and docs' encoder, version 2) synced
    assert report.feedback_uploaded == 0
    assert [p.id for p in queue.pending()] == [answer]  # nothing lost
    assert any("stay queued" in r.getMessage() and "--feedback docs" in r.getMessage() for r in caplog.records)
    report = sync_hub(client, HubConfig(hub_name(world.url), world.url, world.tokens["full"]))
    assert report.feedback_uploaded == 1 and queue.pending() == []
    queue.close()


def test_a_hub_database_from_before_the_feedback_right_is_migrated(tmp_path: Path) -> None:
    """hub.sqlite files written before migration 2 (no user_version, scopes CHECK of read/write) keep their
    tokens and scopes and accept the feedback right."""
    from outpost.hub import home as hub_home_module
    from outpost.hub import metadata as hub_metadata
    from outpost.packs.signing import generate_key

    hub_home = hub_home_module.HubHome.at(tmp_path)
    hub_home.root.mkdir(parents=True)
    generate_key(hub_home.key_path)
    with sqlite3.connect(hub_home.root / "hub.sqlite") as db:
        db.executescript(hub_metadata._LEGACY_V1)  # the schema as it was, at user_version 0
        db.execute("INSERT INTO tokens (name, hash) VALUES ('old', 'h')")
        db.execute("INSERT INTO scopes VALUES (1, 'collection', 'docs', 'read')")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO scopes VALUES (1, 'collection', 'docs', 'feedback')")
    hub_home.metadata(fresh=True)  # opened as in a new process: migrated now
    tokens = Tokens(hub_home)
    assert tokens.get(1).scopes == [("collection", "docs", "read")]
    _, info = tokens.create("new", ["docs"], feedback=["docs"])
    assert ("collection", "docs", "feedback") in info.scopes
    with sqlite3.connect(hub_home.root / "hub.sqlite") as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == hub_metadata.SCHEMA_VERSION
