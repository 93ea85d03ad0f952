"""The dashboard beside the APIs: the Ollama probe at `/` still answers, no page fetches from another host,
state-changing calls need the CSRF token (so a cross-site page cannot forge them), and with --api-key the
dashboard asks once and keeps an HTTP-only, same-site cookie."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import pytest
from playwright.sync_api import expect

from hubkit import ServerThread
from outpost.feedback import FeedbackQueue
from outpost.settings import Settings

from .conftest import Browsing, Dash

PAGES = ["/", "/ui/collections", "/ui/sync", "/ui/models", "/ui/fit", "/ui/settings"]


def test_ollama_clients_still_get_json_at_the_root_and_browsers_get_the_dashboard(dash: Dash) -> None:
    assert "smollm2" in {m.model for m in ollama.Client(host=dash.url).list().models}
    for accept in ("application/json", "*/*", None):
        headers = {"Accept": accept} if accept else {}
        response = httpx.get(dash.url + "/", headers=headers)
        assert response.json() == {"status": "Outpost is running", "version": response.json()["version"]}
    assert httpx.head(dash.url + "/").status_code == 200
    page = httpx.get(dash.url + "/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.headers["content-type"].startswith("text/html") and 'data-testid="question"' in page.text


def test_no_page_fetches_anything_from_another_host(browsing: Browsing) -> None:
    for path in PAGES:
        response = browsing.page.goto(path)
        assert response is not None and response.ok, path
        browsing.page.wait_for_load_state("networkidle")
    assert browsing.foreign() == []
    fetched = {u.removeprefix(browsing.base) for u in browsing.requests}
    assert {"/ui/static/app.css", "/ui/static/ask.js", "/ui/static/common.js"} <= fetched  # assets are served


def test_state_changing_calls_need_the_csrf_token(dash: Dash) -> None:
    with httpx.Client(base_url=dash.url) as client:
        client.get("/ui/collections", headers={"Accept": "text/html"})
        token = client.cookies["outpost_csrf"]
        body = {"answer_id": "nope", "helpful": True}
        assert client.post("/ui/api/vote", json=body).status_code == 403
        assert client.post("/ui/api/vote", json=body, headers={"X-Outpost-CSRF": "x" * 43}).status_code == 403
        # past the CSRF check the vote is judged on its own: an unknown answer id is a 404 (NotFoundError)
        assert client.post("/ui/api/vote", json=body, headers={"X-Outpost-CSRF": token}).status_code == 404
        assert client.post("/ui/api/collections/samples/delete").status_code == 403
    assert (dash.home / "collections" / "samples").is_dir()


def test_a_cross_site_page_cannot_forge_a_vote(browser: object, dash: Dash, tmp_path: Path) -> None:
    """A page on another origin (another loopback port) tries a fetch and a form post with the user's cookies."""
    queue = FeedbackQueue(dash.home)
    answer = queue.record("samples", "q", np.zeros(384, np.float32), ["a"])
    evil_html = f"""<form id=f method=post action="{dash.url}/ui/api/vote" enctype="text/plain">
      <input name='{{"answer_id":"{answer}","helpful":true,"x":"' value='"}}'></form>"""

    async def evil(scope, receive, send):  # type: ignore[no-untyped-def]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": evil_html.encode()})

    b = Browsing(browser, dash.url)
    try:
        b.page.goto("/")  # the user has the dashboard open: its cookies exist
        with ServerThread(evil) as site:
            b.page.goto(site.url)
            result = b.page.evaluate(
                """async ([url, id]) => {
                  try {
                    const r = await fetch(url, {method: 'POST', credentials: 'include',
                      headers: {'Content-Type': 'application/json', 'X-Outpost-CSRF': 'guess'},
                      body: JSON.stringify({answer_id: id, helpful: true})});
                    return 'status ' + r.status;
                  } catch (e) { return 'blocked'; }
                }""",
                [f"{dash.url}/ui/api/vote", answer],
            )
            assert result == "blocked"  # the custom header needs a CORS preflight that nothing approves
            b.page.evaluate("document.getElementById('f').submit()")
            b.page.wait_for_load_state()
        assert queue.get(answer).answer_vote is None
    finally:
        b.close()
        queue.close()


@pytest.fixture
def locked(browser: object, home: Path) -> Iterator[tuple[Dash, Browsing]]:
    with Dash(Settings(home=home, api_key="correct horse")) as server:
        b = Browsing(browser, server.url)
        yield server, b
        b.close()


def test_with_an_api_key_the_dashboard_asks_once_and_keeps_a_strict_http_only_cookie(
    locked: tuple[Dash, Browsing],
) -> None:
    server, b = locked
    page = b.page
    page.goto("/ui/models")
    expect(page).to_have_url(f"{server.url}/ui/login?next=/ui/models")
    page.fill("[data-testid=api-key]", "wrong")
    page.press("[data-testid=api-key]", "Enter")
    expect(page.locator("#notice")).to_have_text("That is not the server's API key")
    page.fill("[data-testid=api-key]", "correct horse")
    page.click("[data-testid=login]")
    expect(page).to_have_url(f"{server.url}/ui/models")
    expect(page.locator("[data-testid=model-row]").first).to_be_visible()
    cookie = next(c for c in b.context.cookies() if c["name"] == "outpost_key")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and "correct horse" not in cookie["value"]
    page.goto("/")  # asked once: every page now opens
    expect(page.locator("[data-testid=question]")).to_be_visible()
    assert httpx.get(server.url + "/v1/models").status_code == 401  # the APIs still want the bearer key
    assert httpx.get(server.url + "/ui/api/jobs/x/events").status_code == 401
    cookies = {"outpost_key": cookie["value"]}
    assert httpx.get(server.url + "/v1/models", cookies=cookies).status_code == 401  # the cookie is the dashboard's
