"""Terminal plumbing shared by every command: consoles, progress bars, errors → exit codes."""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from outpost.errors import OutpostError

__all__ = ["err", "guarded", "out", "print_json", "progress_bars"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

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


def guarded(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn an ``OutpostError`` into one line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except OutpostError as exc:
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            raise typer.Exit(exc.exit_code) from None
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
    sys.stdout.write(json.dumps(value, default=_default, ensure_ascii=False, indent=2) + "\n")
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
