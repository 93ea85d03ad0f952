"""The Sync page against a real hub (uvicorn on 127.0.0.1, real signed packs): what the next sync uploads,
"sync now" with progress per pack, a hub that drops mid-download (one clear message, nothing lost, resumes),
and a hub that is gone."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import expect

from hubkit import CuttingProxy, HubServer
from outpost.feedback import FeedbackQueue
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.hub.tokens import Tokens
from outpost.hubs import HubConfig, hub_name, save_hub
from outpost.ingest import Chunker
from outpost.settings import Settings
from outpost.store import Store

from .conftest import Browsing, Dash, fresh_folder, shot

pytestmark = pytest.mark.slow
JOB_TIMEOUT = 180_000


@pytest.fixture
def hub_home(tmp_path: Path, embedder) -> tuple[Path, str]:  # type: ignore[no-untyped-def]
    """A hub with one published collection `docs`, big enough to cut mid-download; and a token for it."""
    files = {f"filler{i}.txt": f"Filler document {i} about topic {i * 7} and nothing else. " * 8 for i in range(40)}
    files["alpha.md"] = "# Alpha\n\nThe alpha project launches on 3 March.\n"
    docs = fresh_folder(tmp_path / "docs", files)
    home = HubHome.at(tmp_path / "hub")
    home.init()
    chunker = Chunker(embedder.count_tokens, 200, 30, embedder.identity.name)
    Hub(home).ingest([docs], "docs", embedder, chunker, sync=True)
    tokens = Tokens(home)
    rights = {"feedback": ["docs"]} if "feedback" in inspect.signature(tokens.create).parameters else {}
    return tmp_path / "hub", tokens.create("laptop", ["docs"], **rights)[0]


@pytest.fixture
def client(browser: object, tmp_path: Path) -> Iterator[tuple[Dash, Browsing]]:
    with Dash(Settings(home=tmp_path / "client")) as server:
        b = Browsing(browser, server.url)
        yield server, b
        b.close()
        assert b.foreign() == []


def test_sync_now_shows_progress_per_pack_survives_a_cut_and_reports_uploads(
    hub_home: tuple[Path, str], client: tuple[Dash, Browsing]
) -> None:
    hub_path, token = hub_home
    server, browsing = client
    page = browsing.page
    with HubServer(hub_path) as hub, CuttingProxy(hub.port, cut_after=12_000) as proxy:
        save_hub(server.home, HubConfig(hub_name(proxy.url), proxy.url, token))
        page.goto("/ui/sync")
        section = page.locator("[data-testid=hub]")
        expect(section.locator("[data-testid=hub-state]")).to_have_text("reachable")
        row = section.locator("[data-testid=hub-collection][data-name=docs]")
        expect(row).to_contain_text("not here yet")
        expect(row).to_contain_text("v1")
        expect(section).to_contain_text("the query text stays on this laptop")

        page.click("[data-testid=sync-now]")  # the proxy cuts the pack download part-way
        last_error = section.locator("[data-testid=last-error]")
        expect(last_error).to_contain_text("was cut", timeout=JOB_TIMEOUT)
        expect(last_error).to_contain_text("again to resume")
        expect(page.locator("#notice")).to_contain_text("did not sync")
        assert proxy.cuts == 1
        assert not (server.home / "collections" / "docs").exists()  # nothing half-applied

        page.click("[data-testid=sync-now]")  # resumes with a Range request, verifies, applies
        summary = section.locator("[data-testid=sync-summary]")
        expect(summary).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT)
        expect(summary).to_contain_text("docs v0 → v1")
        expect(last_error).to_be_hidden()
        bar = section.locator("[data-testid=progress-bar][data-key='pack:docs']")
        expect(bar).to_contain_text("Pack docs (applied)")
        assert bar.get_attribute("data-done") == bar.get_attribute("data-total") != "0"
        assert any(line.lower().startswith("range: bytes=") for line in proxy.requests)
        assert any(line.startswith("HTTP/1.1 206") for line in proxy.responses)  # the hub honoured it
        expect(row.locator("td").nth(1)).to_have_text("v1")  # the table follows without a reload
        expect(section.locator("[data-testid=hub-meta]")).to_contain_text("Key ed25519:")
        shot(page, "sync")
        store = Store.open(server.home / "collections", "docs")
        assert store.version == 1
        shown = [r[0] for r in store.db.execute("SELECT id FROM chunks LIMIT 2")]
        store.close()

        queue = FeedbackQueue(server.home)  # a vote waiting for the next sync
        answer = queue.record("docs", "when does alpha launch", np.ones(384, np.float32), shown)
        queue.vote(answer, True, {2: False})
        page.reload()
        expect(row).to_contain_text("v1")
        expect(row).to_contain_text("1 voted answer (1 up, 0 down; sources 0 up, 1 down)")
        page.click("[data-testid=sync-now]")
        expect(summary).to_contain_text("1 votes uploaded", timeout=JOB_TIMEOUT)
        assert queue.pending("docs") == []
        queue.close()


def test_an_unreachable_hub_is_shown_and_sync_now_says_why(
    hub_home: tuple[Path, str], client: tuple[Dash, Browsing]
) -> None:
    hub_path, token = hub_home
    server, browsing = client
    with HubServer(hub_path) as hub:
        url = hub.url
    save_hub(server.home, HubConfig(hub_name(url), url, token))  # the hub is gone now
    page = browsing.page
    page.goto("/ui/sync")
    expect(page.locator("[data-testid=hub-state]")).to_have_text("unreachable")
    expect(page.locator("[data-testid=hub]")).to_contain_text("Cannot reach the hub")
    page.click("[data-testid=sync-now]")
    expect(page.locator("#notice")).to_contain_text("Cannot reach the hub", timeout=JOB_TIMEOUT)
    expect(page.locator("[data-testid=last-error]")).to_contain_text("Cannot reach the hub")
    expect(page.locator("[data-testid=sync-now]")).to_be_enabled()
