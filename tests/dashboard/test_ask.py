"""The Ask page end to end: a streamed answer, a citation that opens its source, votes that land in the
feedback queue, local history, and the bad-input cases (each one clear message; nothing lost)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from outpost import Outpost
from outpost.feedback import FeedbackQueue
from outpost.llm.bundled import bundled_models
from outpost.models.registry import Registry

from .conftest import QUESTION, Browsing, Dash, fresh_folder, shot

pytestmark = pytest.mark.slow
ANSWER_TIMEOUT = 180_000  # ms: the first question loads the model


def _ask(page: Page, question: str, collections: list[str], model: str = "citer") -> None:
    page.select_option("[data-testid=collection-select]", collections)
    page.select_option("[data-testid=model-select]", model)
    page.fill("[data-testid=question]", question)
    page.press("[data-testid=question]", "Enter")  # Enter asks


def _record_answer_lengths(page: Page) -> None:
    """Note the answer's length at every DOM change, to prove it arrived in pieces."""
    page.evaluate(
        """() => {
        window.__lengths = [];
        new MutationObserver(() => {
          const a = document.querySelector('[data-testid=answer]');
          if (a) window.__lengths.push(a.textContent.length);
        }).observe(document.getElementById('answers'), {subtree: true, childList: true, characterData: true});
        }"""
    )


def test_ask_streams_a_cited_answer_whose_sources_open_and_take_votes(browsing: Browsing, dash: Dash) -> None:
    page = browsing.page
    page.goto("/")
    _record_answer_lengths(page)
    _ask(page, QUESTION, ["samples"])
    card = page.locator("article.answer-card")
    expect(card).to_have_attribute("data-done", "true", timeout=ANSWER_TIMEOUT)
    lengths = page.evaluate("window.__lengths")
    assert len({n for n in lengths if n > 0}) >= 3, f"the answer did not stream: {lengths}"

    sources = page.locator("[data-testid=source]")
    assert sources.count() >= 1
    assert sources.first.locator(".doc").inner_text().strip()  # each source names its document
    assert page.locator("[data-testid=source-text] mark").count() > 0  # the question's terms are highlighted
    expect(card.locator(".extra")).to_contain_text(re.compile(r"the model's confidence \d+%"))  # llama.cpp's own

    citation = page.locator("[data-testid=citation]").first
    number = citation.get_attribute("data-source")
    source = page.locator(f"li.source[data-number='{number}']")
    expect(source.locator("details")).not_to_have_attribute("open", "")
    citation.click()
    expect(source.locator("details")).to_have_attribute("open", "")
    expect(source.locator("[data-testid=source-text]")).to_be_visible()
    shot(page, "ask-light")

    answer_id = card.get_attribute("data-answer-id")
    page.click("[data-testid=vote-up]")
    expect(page.locator("[data-testid=vote-up]")).to_have_attribute("aria-pressed", "true")
    source.locator("[data-testid=source-vote-down]").click()
    expect(source.locator("[data-testid=source-vote-down]")).to_have_attribute("aria-pressed", "true")
    queue = FeedbackQueue(dash.home)
    item = queue.get(answer_id)
    assert item.answer_vote == 1
    assert item.source_votes == {item.shown[int(number) - 1]: 0}
    assert answer_id in [i.id for i in queue.pending("samples")]  # what `outpost feedback` and sync see
    queue.close()

    page.reload()  # the history is this browser's own, and survives a reload; a click asks again
    history = page.locator("[data-testid=history-item]", has_text=QUESTION)
    expect(history).to_have_count(1)
    history.click()
    expect(page.locator("article.answer-card")).to_have_attribute("data-done", "true", timeout=ANSWER_TIMEOUT)
    assert page.input_value("[data-testid=question]") == QUESTION


def test_dark_theme_follows_the_system(browser: object, dash: Dash) -> None:
    b = Browsing(browser, dash.url, color_scheme="dark")
    try:
        page = b.page
        page.goto("/")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(15, 19, 24)", background
        _ask(page, QUESTION, ["samples"])
        expect(page.locator("article.answer-card")).to_have_attribute("data-done", "true", timeout=ANSWER_TIMEOUT)
        page.locator("[data-testid=citation]").first.click()
        shot(page, "ask-dark")
        assert b.foreign() == []
    finally:
        b.close()


def test_keyboard_reaches_every_control_on_the_ask_page(browsing: Browsing) -> None:
    page = browsing.page
    page.goto("/")
    wanted = {"collection-select", "model-select", "question", "ask"}
    reached: set[str] = set()
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.add(page.evaluate("document.activeElement?.dataset?.testid || ''"))
    assert wanted <= reached, f"Tab never reached {wanted - reached}"


def test_an_empty_question_says_so_and_asks_nothing(browsing: Browsing) -> None:
    page = browsing.page
    page.goto("/")
    page.press("[data-testid=question]", "Enter")
    expect(page.locator("#notice")).to_have_text("Type a question first.")
    assert not [u for u in browsing.requests if "/ui/api/ask" in u]
    expect(page.locator("article.answer-card")).to_have_count(0)


def test_a_collection_that_vanished_gets_one_clear_message_and_the_page_keeps_working(
    browsing: Browsing, dash: Dash, tmp_path: Path
) -> None:
    docs = fresh_folder(tmp_path / "memo", {"memo.txt": "The parking garage closes at 22:00 on weekdays."})
    Outpost(home=dash.home).ingest(docs, collection="vanishing")
    page = browsing.page
    page.goto("/")
    shutil.rmtree(dash.home / "collections" / "vanishing")  # gone behind the page's back
    _ask(page, QUESTION, ["samples", "vanishing"])  # several collections: each answers on its own
    expect(page.locator("#notice")).to_contain_text("No collection named 'vanishing'", timeout=ANSWER_TIMEOUT)
    card = page.locator("article.answer-card")
    expect(card).to_have_count(1)  # the other collection still answered
    expect(card).to_have_attribute("data-collection", "samples")
    expect(card).to_have_attribute("data-done", "true")
    assert page.input_value("[data-testid=question]") == QUESTION  # nothing lost
    expect(page.locator("[data-testid=ask]")).to_be_enabled()
    _ask(page, QUESTION, ["samples"])  # and the page keeps working
    expect(page.locator("article.answer-card[data-done=true]")).to_have_count(1, timeout=ANSWER_TIMEOUT)
    expect(page.locator("#notice")).to_be_hidden()


def test_a_model_that_fails_to_load_gets_one_clear_message(browsing: Browsing, dash: Dash, tmp_path: Path) -> None:
    copy = tmp_path / "broken.gguf"
    shutil.copy(bundled_models()["smollm2"], copy)
    entry = Registry(dash.home).pull_file(copy, "broken")
    with open(entry.path, "r+b") as fh:  # a disk error later: the weights are cut short
        fh.truncate(Path(entry.path).stat().st_size // 2)
    page = browsing.page
    page.goto("/")
    _ask(page, QUESTION, ["samples"], model="broken")
    notice = page.locator("#notice")
    expect(notice).to_contain_text("broken", timeout=ANSWER_TIMEOUT)
    expect(notice).to_contain_text("load")
    assert page.input_value("[data-testid=question]") == QUESTION
    expect(page.locator("[data-testid=ask]")).to_be_enabled()
    Registry(dash.home).remove("broken")
