#!/usr/bin/env python
"""Write ``docs/cli.md``, the CLI reference, from the command tree itself: every command, argument and option.

    .venv/bin/python scripts/cli_reference.py           # rewrite docs/cli.md
    .venv/bin/python scripts/cli_reference.py --check   # exit 1 if docs/cli.md is stale or misses something

The page is rendered from the same typer app ``outpost`` runs (help texts, defaults, environment variables), so
it cannot drift: ``tests/cli/test_cli_docs.py`` renders it again and fails when the file differs, and checks that
every command and option appears in it or in README.md (sqlite-utils' ``tests/test_docs.py`` does the same).
The tree is walked duck-typed (``commands``, ``params``), so typer's vendored click and click itself both work.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "cli.md"
README = ROOT / "README.md"
REGENERATE = ".venv/bin/python scripts/cli_reference.py"

__all__ = ["Command", "PAGE", "README", "render", "root_command", "undocumented", "walk"]


@dataclass(frozen=True)
class Command:
    """One command of the tree: its full path (``outpost hub token create``) and the click command object."""

    path: str
    command: Any

    @property
    def arguments(self) -> list[Any]:
        return [p for p in self.command.params if p.param_type_name == "argument"]

    @property
    def options(self) -> list[Any]:
        return [p for p in self.command.params if p.param_type_name == "option" and not p.hidden]

    @property
    def subcommands(self) -> dict[str, Any]:
        return {n: c for n, c in getattr(self.command, "commands", {}).items() if not c.hidden}


def root_command() -> Any:
    """The click command ``outpost`` runs."""
    import typer.main

    from outpost.cli.main import app

    return typer.main.get_command(app)


def walk(command: Any, path: str = "outpost") -> Iterator[Command]:
    """Every command under ``command`` (itself first), depth first, in the order ``--help`` lists them."""
    node = Command(path, command)
    yield node
    for name, sub in node.subcommands.items():
        yield from walk(sub, f"{path} {name}")


def _argument(param: Any) -> str:
    name = (param.metavar or param.name).upper()
    name = f"{name}..." if param.nargs == -1 else name
    return name if param.required else f"[{name}]"


def _usage(node: Command) -> str:
    parts = [node.path, "[OPTIONS]" if node.options else "", *(_argument(a) for a in node.arguments)]
    if node.subcommands:
        parts.append("COMMAND [ARGS]..." if not getattr(node.command, "invoke_without_command", False) else "[COMMAND]")
    return " ".join(p for p in parts if p)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _flags(option: Any) -> str:
    """``--collection``, ``-c``; an on/off pair as ``--check`` / ``--no-check``."""
    names = [", ".join(f"`{flag}`" for flag in flags) for flags in (option.opts, option.secondary_opts) if flags]
    return " / ".join(names)


def _shown_default(option: Any) -> str:
    default = option.default
    if default is None or default is False or default == [] or default == () or callable(default):
        return ""
    return f" Default: `{default}`."


def _option_row(option: Any) -> str:
    envvar = option.envvar if isinstance(option.envvar, str) else None
    env = f" Environment: `{envvar}`." if envvar else ""
    return f"| {_flags(option)} | {_cell(option.help or '')}{_shown_default(option)}{env} |"


def _section(node: Command) -> list[str]:
    lines = [f"## `{node.path}`", "", f"Usage: `{_usage(node)}`", ""]
    if node.command.help:
        lines += [inspect.cleandoc(node.command.help), ""]
    rows = [f"| `{_argument(a)}` | {_cell(a.help or '')} |" for a in node.arguments]
    rows += [_option_row(o) for o in node.options]
    if rows:
        lines += ["| argument / option | what it does |", "|---|---|", *rows, ""]
    if node.subcommands:
        lines += ["Commands: " + ", ".join(f"[`{n}`](#{_anchor(f'{node.path} {n}')})" for n in node.subcommands), ""]
    return lines


def _anchor(path: str) -> str:
    """GitHub's anchor for a ``## `path` `` heading: lower case, spaces to hyphens, backticks dropped."""
    return path.lower().replace(" ", "-")


def render(root: Any | None = None) -> str:
    """The whole reference page for ``root`` (default: the ``outpost`` command)."""
    nodes = list(walk(root if root is not None else root_command()))
    lines = [
        "# CLI reference",
        "",
        "Every `outpost` command, argument and option, generated from the CLI itself by",
        f"`{REGENERATE}`; `tests/cli/test_cli_docs.py` fails when this page is stale. Flags that set",
        "a setting (`outpost/settings.py`) show its default; without the flag, `config.toml` and `OUTPOST_*`",
        "variables decide.",
        "",
    ]
    lines += [f"- [`{n.path}`](#{_anchor(n.path)})" for n in nodes[1:]]
    lines.append("")
    for node in nodes:
        lines += _section(node)
    return "\n".join(lines).rstrip() + "\n"


def _sections(page: str) -> dict[str, str]:
    """``## `path` `` heading → the text of its section."""
    found: dict[str, str] = {}
    current = None
    for line in page.splitlines():
        if line.startswith("## `") and line.endswith("`"):
            current = line[4:-1]
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def undocumented(root: Any, page: str, readme: str) -> list[str]:
    """Commands and options that appear neither in their section of ``page`` nor on a README line naming them."""
    sections = _sections(page)
    missing = []
    for node in walk(root):
        section = sections.get(node.path)
        near = [line for line in readme.splitlines() if node.path in line]
        if section is None and not near:
            missing.append(node.path)
            continue
        text = (section or "") + "\n".join(near)
        for option in node.options:
            if not any(flag in text for flag in option.opts):
                missing.append(f"{node.path} {option.opts[0]}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="Only check docs/cli.md; exit 1 if it is stale.")
    args = parser.parse_args(argv)
    root = root_command()
    page = render(root)
    if args.check:
        stale = not PAGE.is_file() or PAGE.read_text() != page
        missing = undocumented(root, PAGE.read_text() if PAGE.is_file() else "", README.read_text())
        for item in missing:
            print(f"not documented: {item}", file=sys.stderr)
        if stale:
            print(f"{PAGE.relative_to(ROOT)} is stale: run {REGENERATE}", file=sys.stderr)
        return 1 if stale or missing else 0
    PAGE.write_text(page)
    print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
