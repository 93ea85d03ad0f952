"""Terminal plumbing shared by every command: consoles, progress bars, errors → exit codes."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console, ConsoleOptions, ConsoleRenderable, RenderableType, RenderHook, RenderResult
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.segment import Segment
from rich.text import Text

from outpost.errors import ConfigError, OutpostError

__all__ = ["clean", "err", "guarded", "out", "print_json", "progress_bars"]

# Control characters that can move the cursor, rewrite the screen, retitle the window or reorder what the
# reader sees (C0 but tab and newline, DEL, C1, bidi overrides and isolates). Text from documents, models and
# hubs may hold any of them; the terminal is shown their escapes instead.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` with every terminal control character shown as its escape (``\\x1b``), CRLF as a newline."""
    return _CONTROL.sub(_escape_char, text.replace("\r\n", "\n"))


class _Cleaned:
    """A renderable whose text segments are ``clean``ed; rich's own control segments pass untouched."""

    def __init__(self, inner: RenderableType) -> None:
        self.inner = inner

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for segment in console.render(self.inner, options):
            yield segment if segment.control else Segment(clean(segment.text), segment.style)


class _CleanHook(RenderHook):
    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [_Cleaned(r) for r in renderables]


def _console(stderr: bool) -> Console:
    """A console that never reads markup in what it prints and never sends a control character it was given.

    ``markup=False``: a document holding ``[/]`` or ``[bold]`` is printed as written, not interpreted (or
    crashing); the render hook cleans every text segment printed, tables included.
    """
    console = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False)
    console.push_render_hook(_CleanHook())
    return console


out = _console(stderr=False)
err = _console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")


def quiet_libraries() -> None:
    """Keep third-party chatter (tqdm bars, HF warnings) off the terminal; never go online implicitly."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # torch and numpy's BLAS each start a thread pool; on few cores they fight (DESIGN §4): numpy gets one.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def settings_error(exc: ValidationError) -> str:
    """One line naming each bad setting, what it must be and what it was (``routing.mode: ...``)."""
    problems = [
        f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors(include_url=False)
    ]
    return "invalid settings (config.toml or OUTPOST_* variables): " + "; ".join(problems)


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn an ``OutpostError`` into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OutpostError as exc:
            err.print(Text.assemble(("error:", "bold red"), f" {exc}"))
            raise typer.Exit(exc.exit_code) from None
        except ValidationError as exc:  # config.toml or an OUTPOST_* variable holds a bad value
            err.print(Text.assemble(("error:", "bold red"), f" {settings_error(exc)}"))
            raise typer.Exit(ConfigError.exit_code) from None
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _default(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return str(value)


def print_json(value: Any) -> None:
    """One JSON document on stdout (nothing else goes there with --json)."""
    text = json.dumps(value, default=_default, ensure_ascii=False, indent=2)
    # json escapes C0 itself; DEL, C1 and bidi controls can only sit inside strings, where \\uXXXX is the same data
    sys.stdout.write(_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")
    sys.stdout.flush()


@contextmanager
def progress_bars(enabled: bool = True) -> Iterator[Callable[[str, int, int], None]]:
    """A ``(stage, advance, total)`` callback that drives one rich bar per stage, on stderr."""
    labels = {
        "load": "Reading files",
        "embed": "Embedding chunks",
        "download": "Downloading (bytes)",
        "apply": "Applying",
    }
    with Progress(
        TextColumn("{task.description:<18}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not enabled,
    ) as bars:
        tasks: dict[str, Any] = {}

        def advance(stage: str, step: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(labels.get(stage, stage), total=total)
            bars.update(tasks[stage], advance=step, total=total)

        yield advance
