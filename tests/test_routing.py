"""Hybrid answering (issue 13): the routing policy, sensitivity labels, remotes, fallback and the audit.

The policy tests run ``Router.decide`` directly (no model involved). The end-to-end tests go through
``Outpost.ask`` and the local API with the real bundled SmolLM2; the remote is a real second Outpost API
server on 127.0.0.1 behind a recording ASGI middleware (``routing_kit.Recording``), so every check of what
left is made on the request bodies the remote actually received.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from pydantic import ValidationError

from hubkit import HubServer, ServerThread, free_port
from outpost import Outpost
from outpost.api import create_app
from outpost.audit import AuditEntry, AuditLog
from outpost.cli.console import settings_error
from outpost.costs import PREFILL_FACTOR, break_even
from outpost.embed.sentence_transformers import SentenceTransformerEmbedder
from outpost.errors import ConfigError, NotFoundError, PackError, ReadOnlyError, RemoteError
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name
from outpost.ingest.chunker import Chunker
from outpost.labels import hub_label, set_label
from outpost.remotes import RemoteConfig, RemoteStore
from outpost.routing import Router
from outpost.settings import RoutingSettings, Settings
from outpost.sync import sync_hub
from routing_kit import (
    CANARY_INTERNAL,
    CANARY_PRIVATE,
    MARK_PUBLIC,
    QUESTIONS,
    Recording,
    Silent,
    write_docs,
)

TRUSTED_KEY = "sk-trusted-0f9a8b7c"
CLOUD_KEY = "sk-cloud-1e2d3c4b"
LABELS = {"priv": "private", "intl": "internal", "pub": "public"}


# -- the policy, without a model ----------------------------------------------------------------------------


def _router(home: Path, **policy: object) -> Router:
    remotes = RemoteStore(home)
    remotes.add(RemoteConfig("gpu", "http://127.0.0.1:9/v1", "m", trusted=True))
    remotes.add(RemoteConfig("cloud", "http://127.0.0.1:9/v1", "m"))
    return Router(RoutingSettings(**policy), home)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "label", "asked", "fits", "confidence", "target", "why"),
    [
        ({"mode": "local", "remote": "gpu"}, "public", True, True, 0.9, "local", "routing.mode is local"),
        ({"mode": "local", "remote": "gpu"}, "public", False, False, 0.0, "local", "policy: local"),
        ({"mode": "remote", "remote": "cloud"}, "public", False, True, 0.9, "remote", "policy: remote"),
        ({"mode": "remote", "remote": "cloud"}, "internal", False, True, 0.9, "local", "untrusted remote 'cloud'"),
        ({"mode": "remote", "remote": "gpu"}, "internal", False, True, 0.9, "remote", "policy: remote"),
        ({"mode": "remote", "remote": "gpu"}, "private", True, False, 0.0, "local", "is private"),
        ({"mode": "auto", "remote": "cloud"}, "public", True, True, 0.9, "remote", "asked (--remote)"),
        ({"mode": "auto", "remote": "cloud"}, "public", False, False, 0.9, "remote", "do not fit"),
        ({"mode": "auto", "remote": "cloud"}, "public", False, True, 0.1, "remote", "low local confidence"),
        ({"mode": "auto", "remote": "cloud"}, "public", False, True, 0.9, "local", "confident"),
        ({"mode": "auto", "remote": "cloud", "min_evidence": 0.95}, "public", False, True, 0.9, "remote", "0.90"),
        ({"mode": "auto", "remote": "gpu"}, "private", True, False, 0.0, "local", "never leaves this machine"),
    ],
)
def test_policy_decides_by_mode_label_trust_and_signal(
    home: Path, policy: dict[str, object], label: str, asked: bool, fits: bool, confidence: float, target: str, why: str
) -> None:
    route = _router(home, **policy).decide("c", label, asked=asked, fits=fits, confidence=lambda: confidence)  # type: ignore[arg-type]
    assert route.target == target
    assert why in route.reason


def test_confidence_is_computed_only_when_it_decides(home: Path) -> None:
    calls: list[int] = []

    def confidence() -> float:
        calls.append(1)
        return 0.9

    router = _router(home, mode="auto", remote="gpu")
    router.decide("c", "public", asked=True, fits=True, confidence=confidence)
    router.decide("c", "public", asked=False, fits=False, confidence=confidence)
    assert calls == []
    router.decide("c", "public", asked=False, fits=True, confidence=confidence)
    assert calls == [1]


def test_no_remote_or_an_ambiguous_one(home: Path) -> None:
    alone = Router(RoutingSettings(mode="remote"), home)
    route = alone.decide("c", "public", asked=False, fits=True, confidence=lambda: 1.0)
    assert route.target == "local" and "no remote is configured" in route.reason
    with pytest.raises(ConfigError, match="Several remotes"):
        _router(home, mode="remote").decide("c", "public", asked=False, fits=True, confidence=lambda: 1.0)
    with pytest.raises(NotFoundError, match="No remote named 'nope'"):
        _router(home, mode="remote", remote="nope").decide("c", "public", asked=False, fits=True, confidence=lambda: 1)


def test_routing_settings_are_validated_with_clear_errors(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "config.toml").write_text('[routing]\nmode = "cloud"\nmin_evidnce = 0.2\n')
    with pytest.raises(ValidationError) as caught:
        Settings()
    line = settings_error(caught.value)
    assert "routing.mode: Input should be 'local', 'auto' or 'remote' (got 'cloud')" in line
    assert "routing.min_evidnce: Extra inputs are not permitted" in line and "\n" not in line
    (home / "config.toml").write_text('[routing]\nmode = "auto"\nremote = "gpu"\ntimeout_s = 3\n')
    assert Settings().routing == RoutingSettings(mode="auto", remote="gpu", timeout_s=3)


def test_remotes_are_stored_private_and_keys_stay_in_the_environment(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RemoteStore(home)
    store.add(RemoteConfig("gpu", "https://gpu.example/v1", "llama", "GPU_KEY", trusted=True, price_in=3))
    monkeypatch.setenv("GPU_KEY", TRUSTED_KEY)
    assert store.get("gpu").api_key() == TRUSTED_KEY
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert TRUSTED_KEY not in store.path.read_text()
    monkeypatch.delenv("GPU_KEY")
    with pytest.raises(RemoteError, match=r"\$GPU_KEY, which is not set"):
        store.get("gpu").api_key()
    for bad in (dict(url="ftp://x/v1"), dict(name="../x"), dict(model="")):
        with pytest.raises(ConfigError):
            RemoteConfig(**{"name": "x", "url": "http://h/v1", "model": "m", **bad})  # type: ignore[arg-type]
    store.remove("gpu")
    assert store.list() == []
    with pytest.raises(NotFoundError, match="No remote named 'gpu'"):
        store.remove("gpu")


def test_labels_default_private_and_synced_collections_take_the_hubs(home: Path, tmp_path: Path) -> None:
    op = Outpost(home=home)
    op.ingest(write_docs(tmp_path / "d", "x"), collection="c")
    assert op.label("c") == "private"
    assert op.label("c", "internal") == "internal" and Outpost(home=home).label("c") == "internal"
    with pytest.raises(ConfigError, match="Unknown sensitivity label 'secret'"):
        op.label("c", "secret")
    op.store("c").set_meta(hub="https://hub.example")
    with pytest.raises(ReadOnlyError, match="set by the hub"):
        op.label("c", "public")


def test_audit_totals_cost_and_savings(home: Path) -> None:
    log = AuditLog(home)
    for route, tin, tout, cost, saved in [("remote", 1000, 200, 0.006, 0), ("local", 2000, 100, 0, 0.0075)]:
        row = log.record(AuditEntry("id", "h", "auto", route, "m", "why", {"c": "public"}, ["k1"]))
        log.finish(row, tin, tout, cost, saved)
    assert stat.S_IMODE((home / "audit.sqlite").stat().st_mode) == 0o600
    month = log.entries()[0].at[:7]
    usage = log.usage(month)
    assert (usage.answers_remote, usage.answers_local) == (1, 1)
    assert (usage.tokens_remote_in, usage.tokens_local_out) == (1000, 100)
    assert usage.cost_usd == pytest.approx(0.006) and usage.saved_usd == pytest.approx(0.0075)
    assert log.usage("1999-01").answers_local == 0
    assert RemoteConfig("r", "http://h/v1", "m", price_in=3, price_out=15).cost(1000, 200) == pytest.approx(0.006)


# -- end to end: a real remote on loopback ------------------------------------------------------------------


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerThread, Recording]]:
    """A second Outpost API server (its own home, the bundled SmolLM2) behind a recording middleware."""
    recording = Recording(create_app(Settings(home=tmp_path_factory.mktemp("remote-home"), n_ctx=2048)))
    with ServerThread(recording) as server:
        yield server, recording


@pytest.fixture(scope="module")
def laptop(tmp_path_factory: pytest.TempPathFactory, remote: tuple[ServerThread, Recording]) -> Path:
    """A home with a private, an internal and a public collection, and two remotes: one trusted, one not."""
    home = tmp_path_factory.mktemp("laptop")
    docs = tmp_path_factory.mktemp("docs")
    op = Outpost(home=home)
    for name, marker in (("priv", CANARY_PRIVATE), ("intl", CANARY_INTERNAL), ("pub", MARK_PUBLIC)):
        op.ingest(write_docs(docs / name, marker), collection=name)
        op.label(name, LABELS[name])
    url = f"{remote[0].url}/v1"
    RemoteStore(home).add(RemoteConfig("gpu", url, "smollm2", "ROUTING_TEST_GPU_KEY", trusted=True, price_in=3))
    RemoteStore(home).add(RemoteConfig("cloud", url, "smollm2", "ROUTING_TEST_CLOUD_KEY", price_in=3, price_out=15))
    return home


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTING_TEST_GPU_KEY", TRUSTED_KEY)
    monkeypatch.setenv("ROUTING_TEST_CLOUD_KEY", CLOUD_KEY)


def _laptop(home: Path, **routing: object) -> Outpost:
    return Outpost(home=home, llm_model="smollm2", n_ctx=1024, top_k=1, routing=routing)


def _allowed(collection: str, remote: str) -> bool:
    return collection == "pub" or (collection == "intl" and remote == "gpu")


def _expected(mode: str, remote: str, asked: bool, collection: str) -> str | None:
    """The route the policy must take; None where it rests on the confidence signal (auto, not asked)."""
    if mode == "local" or not _allowed(collection, remote):
        return "local"
    if mode == "remote" or asked:
        return "remote"
    return None


@pytest.mark.slow
def test_canaries_never_reach_the_remote_under_any_policy_label_and_remote(
    laptop: Path, remote: tuple[ServerThread, Recording]
) -> None:
    """Every (mode, remote, asked, collection) combination, two questions each: 72 routed questions.

    The questions rotate from one policy to the next, so every question is routed under every label (each
    retrieves its own topic's chunk: ``top_k=1``). All six questions under every combination (216) cost 160 s
    of the suite and checked nothing more.
    """
    recording = remote[1]
    before = len(recording.bodies())
    routes: dict[str, int] = {"local": 0, "remote": 0}
    asked_count = 0
    policies = [
        (m, name, asked) for m in ("local", "auto", "remote") for name in ("gpu", "cloud") for asked in (False, True)
    ]
    for n, (mode, name, asked) in enumerate(policies):
        op = _laptop(laptop, mode=mode, remote=name, timeout_s=120)
        for c, collection in enumerate(LABELS):
            first = (2 * n + c) % len(QUESTIONS)  # over the 12 policies: all six questions per collection
            for question in (QUESTIONS[first], QUESTIONS[(first + 3) % len(QUESTIONS)]):
                stream = op.ask(question, collection, stream=True, max_tokens=1, seed=0, remote=asked)
                asked_count += 1
                went = "remote" if stream.pieces is not None else "local"
                routes[went] += 1
                if went == "remote":
                    assert _allowed(collection, name), (mode, name, collection)
                    stream.result()  # one token from the remote, then the audit row is completed
                assert _expected(mode, name, asked, collection) in (None, went), (mode, name, asked)
    assert asked_count == 72 and routes["remote"] >= 18  # 12 in mode remote + 6 asked in auto, at least

    bodies = recording.bodies()[before:]
    assert len(bodies) == routes["remote"]  # the remote saw exactly the remote routes, nothing else
    keys = {h.get("authorization") for h, _ in bodies}
    assert keys == {f"Bearer {TRUSTED_KEY}", f"Bearer {CLOUD_KEY}"}
    for headers, body in bodies:
        assert CANARY_PRIVATE not in body
        if CANARY_INTERNAL in body:
            assert headers["authorization"] == f"Bearer {TRUSTED_KEY}"  # internal text only to the trusted one
    assert any(MARK_PUBLIC in body for _, body in bodies)  # the control: public text does go
    assert any(CANARY_INTERNAL in body for _, body in bodies)  # and internal text to the trusted remote

    entries = AuditLog(laptop).entries()
    assert len(entries) == asked_count
    sent_ids = {cid for e in entries for cid in e.chunks_sent}
    private_ids = {c.id for c in Outpost(home=laptop).store("priv").snapshot().upserts}
    assert sent_ids and not sent_ids & private_ids
    for e in entries:
        assert bool(e.chunks_sent) == (e.route == "remote")
        assert e.question is None and len(e.question_sha256) == 64  # no question text unless enabled
        if e.collections == {"priv": "private"}:
            assert e.route == "local"
    remote_rows = [e for e in entries if e.route == "remote"]
    assert all(e.tokens_in > 0 and e.tokens_out >= 1 for e in remote_rows)
    cloud = [e for e in remote_rows if e.remote == "cloud"]
    assert cloud and all(e.cost_usd == pytest.approx((e.tokens_in * 3 + e.tokens_out * 15) / 1e6) for e in cloud)


@pytest.mark.slow
def test_remote_answer_is_grounded_and_private_answer_says_why(laptop: Path) -> None:
    op = _laptop(laptop, mode="auto", remote="cloud", log_questions=True)
    answer = op.ask("How many vacation days do new hires get?", "pub", max_tokens=8, seed=0, remote=True)
    assert answer.route == "remote" and answer.model == "cloud/smollm2"
    assert answer.grounding in ("supported", "partial", "unsupported") and answer.evidence  # checked after remote
    kept = op.ask("How many vacation days do new hires get?", "priv", max_tokens=4, seed=0, remote=True)
    assert kept.route == "local" and kept.model == "smollm2"
    assert "collection 'priv' is private: its text never leaves this machine" in kept.route_reason
    last = AuditLog(laptop).entries()[-1]
    assert last.question == "How many vacation days do new hires get?"  # log_questions on
    assert last.tokens_in > 0 and last.saved_usd > 0  # a local answer, valued at the remote's prices


@pytest.mark.slow
def test_falls_back_to_local_when_the_remote_is_down_or_slow(laptop: Path, tmp_path: Path) -> None:
    home = tmp_path / "fallback"
    op = Outpost(home=home, llm_model="smollm2", n_ctx=1024, top_k=2, routing={"mode": "remote", "timeout_s": 1.0})
    op.ingest(write_docs(tmp_path / "docs", MARK_PUBLIC), collection="pub")
    op.label("pub", "public")
    RemoteStore(home).add(RemoteConfig("down", f"http://127.0.0.1:{free_port()}/v1", "m"))  # nothing listens
    answer = op.ask("How many vacation days do new hires get?", "pub", max_tokens=4, seed=0)
    assert answer.route == "fallback" and answer.model == "smollm2" and answer.generated
    assert "unreachable" in answer.route_reason

    silent = Silent(delay=4.0)
    with ServerThread(silent) as slow:
        RemoteStore(home).add(RemoteConfig("down", f"{slow.url}/v1", "m"))
        answer = op.ask("How many vacation days do new hires get?", "pub", max_tokens=4, seed=0)
        assert silent.received == 1
    assert answer.route == "fallback" and "no answer within 1 s" in answer.route_reason
    rows = AuditLog(home).entries()
    assert [e.route for e in rows] == ["fallback", "fallback"] and all(e.chunks_sent == [] for e in rows)
    assert all(e.remote == "down" and e.tokens_in > 0 for e in rows)


@pytest.mark.slow
def test_local_api_and_dashboard_follow_the_same_policy(laptop: Path, remote: tuple[ServerThread, Recording]) -> None:
    """The OpenAI dialect's ``rag:`` models and the dashboard's Ask answer through ``Outpost.ask``: the same
    routing, the same audit."""
    recording = remote[1]
    policy = {"mode": "remote", "remote": "cloud"}
    settings = Settings(home=laptop, llm_model="smollm2", n_ctx=1024, top_k=1, max_tokens=2, routing=policy)
    question = "How many vacation days do new hires get?"
    with ServerThread(create_app(settings)) as api:
        client = openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused")
        before = len(recording.bodies())
        for collection in ("pub", "priv", "intl"):
            messages = [{"role": "user", "content": question}]
            reply = client.chat.completions.create(model=f"rag:{collection}", messages=messages, max_tokens=2)
            assert reply.choices[0].message.content is not None
        with httpx.Client(base_url=api.url, timeout=120) as browser:
            browser.get("/ui/collections", headers={"Accept": "text/html"})
            csrf = {"X-Outpost-CSRF": browser.cookies["outpost_csrf"]}
            body = {"question": question, "collections": ["pub", "priv"]}
            events = browser.post("/ui/api/ask", json=body, headers=csrf).text
    done = [json.loads(line[6:])["answer"] for line in events.splitlines() if '"answer": {' in line]
    assert [(a["collection"], a["route"]) for a in done] == [("pub", "remote"), ("priv", "local")]
    assert "is private" in done[1]["route_reason"]
    sent = recording.bodies()[before:]
    assert len(sent) == 2 and all(MARK_PUBLIC in body for _, body in sent)  # pub twice; priv and intl never
    routes = [(e.collections, e.route) for e in AuditLog(laptop).entries()[-5:]]
    assert routes == [
        ({"pub": "public"}, "remote"),
        ({"priv": "private"}, "local"),
        ({"intl": "internal"}, "local"),  # cloud is not trusted
        ({"pub": "public"}, "remote"),
        ({"priv": "private"}, "local"),
    ]


def test_a_synced_collection_takes_the_hubs_label(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    """The hub ships each collection's label with its sync plan; laptops take it at every sync, even when
    no new version arrives; an old hub (no label) means private."""
    hub_home = HubHome.at(tmp_path / "hub")
    key = hub_home.init()
    hub = Hub(hub_home)
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    hub.ingest([write_docs(tmp_path / "docs", MARK_PUBLIC)], "handbook", embedder, chunker)
    token = Tokens(hub_home).create("t", ["handbook"])[0]
    laptop = tmp_path / "laptop"
    with HubServer(tmp_path / "hub") as server:
        config = HubConfig(hub_name(server.url), server.url, token)
        sync_hub(laptop, config, key)
        assert Outpost(home=laptop).label("handbook") == "private"  # never labelled on the hub
        store = hub.store("handbook")
        set_label(store, "public")
        store.close()
        assert Outpost(home=laptop).label("handbook") == "private"  # until the next sync
        report = sync_hub(laptop, config, key)
        assert report.current == ["handbook"]  # no new version, and still the label arrived
        assert Outpost(home=laptop).label("handbook") == "public"
    raw = {"collection": "handbook", "version": 1, "pack": None}
    assert hub_label(raw) == "private"  # an old hub: private, the safe reading
    with pytest.raises(PackError, match="sensitivity label 'secret'"):
        hub_label({**raw, "label": "secret"})


def test_break_even_arithmetic() -> None:
    """The seeds' case: 1M requests a month against $3/$15 per million tokens, on a $2,000 machine."""
    costs = break_even(
        1_000_000 / 30, tokens_in=1500, tokens_out=250, price_in=3, price_out=15, decode_tps=50, hardware_usd=2000
    )
    assert costs.remote_per_request == pytest.approx((1500 * 3 + 250 * 15) / 1e6)  # $0.00825
    assert costs.remote_per_month == pytest.approx(8250)
    seconds = 250 / 50 + 1500 / (50 * PREFILL_FACTOR)  # 8 s a request
    assert costs.seconds_per_request == pytest.approx(seconds)
    assert costs.machines == 4  # 33,333 a day × 8 s = 3.1 machine-days
    energy = seconds * 60 / 1000 / 3600 * 0.15
    assert costs.local_per_month == pytest.approx(4 * 2000 / 36 + 1_000_000 * energy)
    assert costs.break_even_per_day == pytest.approx(2000 / 36 / (30 * (0.00825 - energy)))
    free = break_even(100, tokens_in=1500, tokens_out=250, price_in=0, price_out=0, decode_tps=50, hardware_usd=1)
    assert free.break_even_per_day is None and "never" in free.explain()[-2]


def test_extractive_answers_never_route(home: Path, tmp_path: Path) -> None:
    """``--extractive`` means no model at all: even ``mode = "remote"`` sends nothing (the audit says so)."""
    op = Outpost(home=home, routing={"mode": "remote"})
    op.ingest(write_docs(tmp_path / "docs", MARK_PUBLIC), collection="pub")
    op.label("pub", "public")
    RemoteStore(home).add(RemoteConfig("down", f"http://127.0.0.1:{free_port()}/v1", "m"))
    answer = op.ask("How many vacation days do new hires get?", "pub", extractive=True, remote=True)
    assert answer.route == "local" and answer.grounding == "extractive" and "twenty" in answer.text
    (entry,) = AuditLog(home).entries()
    assert (entry.route, entry.model, entry.chunks_sent) == ("local", "extractive", [])
