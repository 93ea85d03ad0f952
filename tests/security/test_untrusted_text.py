"""Text from documents reaches the terminal as text: no rich markup read into it, no control sequence sent.

A document (and its file name) full of rich markup and terminal escape sequences is ingested with the
`outpost` CLI (typer's runner, in-process), then searched, asked (`--json`) and listed; one run goes through
a real subprocess with colours forced on. Before the fix, `[/]` in a chunk crashed `outpost search` with a
MarkupError, `[bold]` vanished into styling, and an ESC sequence in a document could clear the reader's
screen or retitle the window.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hubkit import outpost_cli
from outpost.cli import app

pytestmark = pytest.mark.slow  # `ask` runs the LLM and one test starts a CLI subprocess

# Sequences a hostile document might carry: clear screen, window title (OSC ... BEL), an 8-bit CSI (C1),
# colour, and a right-to-left override that reorders what the reader sees.
HOSTILE = ["\x1b[2J", "\x1b]0;PWNED\x07", "\x9b31m", "\x1b[31m", "\u202e"]
FILE_NAME = "[red]vacation[blink] \x1b[2Jpolicy.txt"  # a file name cannot hold "/", so no [/]
BODY = (
    "Vacation policy [/] for [bold]new hires[/bold]: twenty [link=http://evil.example]days[/link] a year.\n"
    f"Escapes {''.join(HOSTILE)} end here [/red] and [ unbalanced.\n\n"
    "Second paragraph about vacation days with [magenta]more markup[/] in it.\n"
)


def no_raw_controls(text: str) -> bool:
    """No ESC, no C1 control, no bidi override reached the output stream."""
    return not any(c == "\x1b" or "\x80" <= c <= "\x9f" or c in "\u202a\u202b\u202c\u202d\u202e" for c in text)


Cli = Callable[..., Result]


def runner_for(home: Path) -> Cli:
    """``outpost ARGS`` in-process; the CLI tightens the process umask (outpost.home), so it is put back."""

    def invoke(*args: str) -> Result:
        umask = os.umask(0o022)
        try:
            return CliRunner().invoke(app, list(args), env={"OUTPOST_HOME": str(home)}, catch_exceptions=False)
        finally:
            os.umask(umask)

    return invoke


@pytest.fixture(scope="module")
def hostile_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile-docs")
    (root / FILE_NAME).write_text(BODY, encoding="utf-8")
    home = tmp_path_factory.mktemp("hostile-home")
    done = runner_for(home)("ingest", str(root), "--collection", "hostile", "-q")
    assert done.exit_code == 0, done.stderr
    assert no_raw_controls(done.stdout + done.stderr)
    return home


@pytest.fixture
def cli(hostile_home: Path) -> Cli:
    return runner_for(hostile_home)


def test_search_prints_markup_literally_and_no_control_sequences(cli: Cli) -> None:
    done = cli("search", "vacation policy", "--collection", "hostile")
    assert done.exit_code == 0, done.stderr  # was: MarkupError: closing tag '[/]' ... has nothing to close
    assert "[/]" in done.stdout and "[bold]new hires[/bold]" in done.stdout and "[red]vacation[blink]" in done.stdout
    assert no_raw_controls(done.stdout + done.stderr)
    assert "\\x1b[2J" in done.stdout  # shown as its escape, from the body and from the file name


def test_json_output_keeps_the_exact_text_with_controls_escaped(cli: Cli) -> None:
    done = cli("search", "vacation policy", "--collection", "hostile", "--json")
    assert done.exit_code == 0, done.stderr
    assert no_raw_controls(done.stdout)
    results = json.loads(done.stdout)["results"]
    assert results[0]["document"] == FILE_NAME  # the data itself is intact: \u escapes decode to it
    assert any(all(seq in r["text"] for seq in HOSTILE) for r in results)


def test_ask_json_and_collections(cli: Cli) -> None:
    asked = cli(
        "ask",
        "How many vacation days?",
        "-c",
        "hostile",
        "--json",
        "--max-tokens",
        "24",
        "--seed",
        "0",
        "--ctx",
        "1024",
    )
    assert asked.exit_code == 0, asked.stderr
    assert no_raw_controls(asked.stdout + asked.stderr)
    answer = json.loads(asked.stdout)
    assert answer["sources"][0]["document"] == FILE_NAME
    for args in (("collections",), ("collections", "--json"), ("feedback", "--all")):
        listed = cli(*args)
        assert listed.exit_code == 0, listed.stderr
        assert no_raw_controls(listed.stdout + listed.stderr)
    assert "hostile" in cli("collections").stdout


def test_errors_carrying_markup_print_as_written(cli: Cli) -> None:
    done = cli("search", "x", "--collection", "[/]\x1b[2J")
    assert done.exit_code == 2, done.stderr  # one line, the ConfigError's exit code: not a rich traceback
    assert "Invalid collection name" in done.stderr and "[/]" in done.stderr and "Traceback" not in done.stderr
    assert no_raw_controls(done.stderr)


def test_a_colour_terminal_still_gets_no_control_sequence_from_the_document(
    hostile_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With colours forced on, rich emits its own SGR codes; none of the document's sequences may pass."""
    monkeypatch.setenv("FORCE_COLOR", "1")
    done = outpost_cli("search", "vacation policy", "--collection", "hostile", home=hostile_home)
    assert done.returncode == 0, done.stderr
    for seq in HOSTILE:
        assert seq not in done.stdout
