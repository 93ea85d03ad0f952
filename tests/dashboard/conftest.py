"""Browser tests of the dashboard: real headless Chromium (Debian's package) driven by Playwright against a
real `outpost serve` app under uvicorn on 127.0.0.1, with the real embedder and the real SmolLM2.

Chromium is never downloaded here (`playwright install` is not used): the Debian `chromium` package at
/usr/bin/chromium is launched through `executable_path`. If it is missing, the tests fail with a message
saying how to install it when CI is set (so CI can never skip them), and skip elsewhere.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from hubkit import ServerThread
from outpost import Outpost
from outpost.api import create_app
from outpost.models.modelfile import parse_modelfile
from outpost.models.registry import Registry
from outpost.settings import Settings

CHROMIUM = os.environ.get("OUTPOST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1280, "height": 800}
QUESTION = "How many vacation days do new hires get?"

expect.set_options(timeout=30_000)  # two shared cores: a page can take seconds while a model loads beside it


def _example(question: str, source: str, answer: str) -> str:
    return (
        f'MESSAGE user """Sources:\n\n[1] (doc.txt)\n{source}\n\nQuestion: {question}"""\n'
        f'MESSAGE assistant """[1] says: {answer} [1]."""\n'
    )


# A Modelfile-derived SmolLM2 shown three answers that cite: the 135M model alone rarely writes [n],
# and the citation → source path needs an answer that cites. Same weights, same answering path.
CITER_MODELFILE = (
    "FROM smollm2\nPARAMETER temperature 0\n"
    + _example("When does the office open?", "The office opens at 9.", "The office opens at 9")
    + _example("Who approves expenses?", "Managers approve expenses.", "Managers approve expenses")
    + _example("What color is the logo?", "The logo is blue.", "The logo is blue")
)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).is_file():
        message = (
            f"Chromium is not installed at {CHROMIUM}: the dashboard's browser tests need it. "
            "Install it with `apt-get update && apt-get install -y chromium` (as root); .ci/run does this."
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Dash(ServerThread):
    """`outpost serve`'s app over a home, on a free loopback port."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(create_app(settings))
        self.settings = settings
        self.home = settings.home


@pytest.fixture(scope="session")
def dash(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Iterator[Dash]:
    """One server for the session: the bundled samples as `samples`, and the citing model `citer`."""
    home = tmp_path_factory.mktemp("dash-home")
    Outpost(home=home).ingest(sample_dir, collection="samples")
    registry = Registry(home)
    registry.derive("citer", registry.get("smollm2"), parse_modelfile(CITER_MODELFILE).to_text())
    with Dash(Settings(home=home, n_ctx=2048, max_tokens=32, temperature=0.0)) as server:
        yield server


class Browsing:
    """A page in a fresh browser context that records every request it makes."""

    def __init__(self, browser: object, base: str, color_scheme: str = "light") -> None:
        self.base = base
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport=VIEWPORT, color_scheme=color_scheme, base_url=base
        )
        self.requests: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page = self.context.new_page()

    def foreign(self) -> list[str]:
        """Requests to any host but the server's own (data: URLs never leave the page)."""
        own = urlsplit(self.base).netloc
        return [u for u in self.requests if not u.startswith("data:") and urlsplit(u).netloc != own]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def browsing(browser: object, dash: Dash) -> Iterator[Browsing]:
    """A light-theme page on the session server; no page may fetch from anywhere else."""
    b = Browsing(browser, dash.url)
    yield b
    b.close()
    assert b.foreign() == [], f"the dashboard fetched from other hosts: {b.foreign()}"


def shot(page: object, name: str) -> Path:
    """A 1280×800 screenshot for the README (docs/screenshots/NAME.png)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path


def fresh_folder(root: Path, files: dict[str, str | bytes]) -> Path:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for name, content in files.items():
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root
