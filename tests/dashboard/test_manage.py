"""Collections, Models, Fit and Settings pages: ingest with progress, delete with confirmation, pull a model
from a file with progress, create one from a Modelfile, the advisor's arithmetic, where settings came from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from outpost.llm.bundled import bundled_models
from outpost.models.registry import Registry
from outpost.settings import Settings

from .conftest import Browsing, Dash, fresh_folder, shot

JOB_TIMEOUT = 180_000


def _bars_complete(browsing: Browsing, panel: str) -> dict[str, tuple[int, int]]:
    bars = browsing.page.locator(f"[data-testid={panel}] [data-testid=progress-bar]")
    out = {}
    for i in range(bars.count()):
        bar = bars.nth(i)
        out[bar.get_attribute("data-key")] = (int(bar.get_attribute("data-done")), int(bar.get_attribute("data-total")))
    return out


@pytest.mark.slow
def test_ingest_a_folder_with_progress_and_per_file_errors_then_delete_it(
    browsing: Browsing, dash: Dash, tmp_path: Path
) -> None:
    docs = fresh_folder(
        tmp_path / "policies",
        {
            "travel.md": "# Travel\n\nTrain is preferred for trips under 500 km.\n",
            "badges.txt": "Lost badges are replaced at the front desk for a fee of 10 EUR.\n",
            "parking.md": "# Parking\n\nThe garage closes at 22:00.\n",
            "broken.pdf": b"%PDF-1.7 this is not really a PDF",
        },
    )
    page = browsing.page
    page.goto("/ui/collections")
    page.fill("[data-testid=ingest-path]", str(docs))
    page.fill("[data-testid=ingest-collection]", "policies")
    page.click("[data-testid=ingest]")
    summary = page.locator("[data-testid=ingest-summary]")
    expect(summary).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT)
    expect(summary).to_contain_text("policies v1: 3 added")
    bars = _bars_complete(browsing, "ingest-progress")
    assert bars["load"] == (4, 4) and bars["embed"][0] == bars["embed"][1] > 0, bars
    expect(page.locator("[data-testid=ingest-errors] li")).to_have_count(1)
    expect(page.locator("[data-testid=ingest-errors]")).to_contain_text("broken.pdf")
    row = page.locator("[data-testid=collection-row][data-name=policies]")  # the table updates by itself
    expect(row).to_contain_text("local")
    shot(page, "collections")
    expect(row.locator("td").nth(1)).to_have_text("3")
    row.locator("[data-testid=delete-collection]").click()
    row.locator("[data-testid=cancel-delete]").click()  # a second thought keeps it
    assert (dash.home / "collections" / "policies").is_dir()
    row.locator("[data-testid=delete-collection]").click()
    row.locator("[data-testid=confirm-delete]").click()
    expect(row).to_have_count(0)
    assert not (dash.home / "collections" / "policies").exists()


def test_ingest_of_a_missing_folder_says_so(browsing: Browsing, tmp_path: Path) -> None:
    page = browsing.page
    page.goto("/ui/collections")
    page.fill("[data-testid=ingest-path]", str(tmp_path / "nowhere"))
    page.fill("[data-testid=ingest-collection]", "nowhere")
    page.click("[data-testid=ingest]")
    expect(page.locator("#notice")).to_contain_text("No such file or folder")
    assert page.input_value("[data-testid=ingest-path]") == str(tmp_path / "nowhere")  # nothing lost


@pytest.mark.slow
def test_models_pull_from_a_file_with_progress_create_from_a_modelfile_and_delete(
    browsing: Browsing, dash: Dash
) -> None:
    page = browsing.page
    Registry(dash.home).get(dash.settings.llm_model)  # the first answer assembles the default model into the home
    page.goto("/ui/models")
    in_use = page.locator(f"[data-testid=model-row][data-name='{dash.settings.llm_model}']")
    expect(in_use).to_have_class("in-use")  # the default chat model is the one marked in use
    row = page.locator("[data-testid=model-row][data-name=smollm2]")
    expect(row).not_to_have_class("in-use")
    cells = [row.locator("td").nth(i).inner_text() for i in range(1, 6)]  # family, params, quant, size, context
    assert all(cells) and cells[0] == "llama" and cells[1] == "135M" and cells[4] == "8192", cells

    page.fill("[data-testid=pull-source]", str(bundled_models()["smollm2"]))
    page.fill("[data-testid=pull-name]", "smol-copy")
    page.click("[data-testid=pull]")
    summary = page.locator("[data-testid=pull-summary]")
    expect(summary).to_have_attribute("data-state", "done", timeout=JOB_TIMEOUT)
    expect(summary).to_contain_text("Pulled smol-copy")
    bars = _bars_complete(browsing, "pull-progress")
    assert bars and all(done == total > 0 for done, total in bars.values()), bars

    page.fill("[data-testid=create-name]", "terse")
    page.fill("[data-testid=modelfile]", "FROM smol-copy\nPARAMETER frobnicate 3\n")
    page.click("[data-testid=create]")
    expect(page.locator("#notice")).to_contain_text("frobnicate")  # validated: one clear message
    page.fill(
        "[data-testid=modelfile]", 'FROM smol-copy\nSYSTEM """Answer in one sentence."""\nPARAMETER temperature 0\n'
    )
    page.click("[data-testid=create]")
    expect(page.locator("[data-testid=create-summary]")).to_have_text("Created terse from smol-copy.")
    expect(page.locator("#notice")).to_be_hidden()
    assert "Answer in one sentence." in (Registry(dash.home).get("terse").modelfile or "")

    expect(page.locator("[data-testid=model-row][data-name=terse]")).to_contain_text("derived ← smol-copy")
    shot(page, "models")
    for name in ("terse", "smol-copy"):
        row = page.locator(f"[data-testid=model-row][data-name='{name}']")
        row.locator("[data-testid=delete-model]").click()
        row.locator("[data-testid=confirm-delete]").click()
        expect(row).to_have_count(0)
    assert {e.name for e in Registry(dash.home).list()} >= {"smollm2"}
    assert "smol-copy" not in {e.name for e in Registry(dash.home).list()}


def test_pulling_a_file_that_is_not_a_model_says_so(browsing: Browsing, tmp_path: Path) -> None:
    junk = tmp_path / "notes.gguf"
    junk.write_text("just some notes")
    page = browsing.page
    page.goto("/ui/models")
    page.fill("[data-testid=pull-source]", str(junk))
    page.click("[data-testid=pull]")
    expect(page.locator("#notice")).to_contain_text("not a readable GGUF file", timeout=JOB_TIMEOUT)


def test_the_fit_page_shows_its_arithmetic(browsing: Browsing) -> None:
    page = browsing.page
    page.goto("/ui/fit")
    expect(page.locator("[data-testid=hardware]")).to_contain_text("RAM")
    assert page.locator("[data-testid=fit-row]").count() >= 8  # the registered model + the planning sizes
    first = page.locator("[data-testid=fit-explain] pre").first
    for term in ("weights:", "KV cache: 2 ×", "compute buffers:", "total:", "="):
        expect(first).to_contain_text(term)
    shot(page, "fit")


@pytest.fixture
def configured(browser: object, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browsing]:
    """A server whose settings come from all four places: default, config.toml, environment, command line."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("top_k = 7\n")
    monkeypatch.setenv("OUTPOST_MAX_TOKENS", "99")
    with Dash(Settings(n_ctx=1536)) as server:
        b = Browsing(browser, server.url)
        yield b
        b.close()
        assert b.foreign() == []


def test_settings_say_where_each_value_came_from(configured: Browsing) -> None:
    page = configured.page
    page.goto("/ui/settings")

    def row(name: str) -> tuple[str, str]:
        r = page.locator(f"[data-testid=setting-row][data-name={name}]")
        return r.locator(".value").inner_text(), r.locator("[data-testid=setting-origin]").inner_text()

    assert row("top_k")[0] == "7" and row("top_k")[1].startswith("config.toml")
    assert row("max_tokens") == ("99", "environment (OUTPOST_MAX_TOKENS)")
    assert row("n_ctx") == ("1536", "command line")
    assert row("rrf_k") == ("60", "default")
    shot(page, "settings")
