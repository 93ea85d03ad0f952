"""Documentation that cannot drift: every CLI command and option is in docs/cli.md (generated) or README.md.

``scripts/cli_reference.py`` renders the reference page from the command tree ``outpost`` runs; here it is
rendered again and compared, and the tree is walked to find any command or option the docs do not name.
"""

from __future__ import annotations

import pytest

from clikit import reference


@pytest.fixture(scope="module")
def root() -> object:
    return reference.root_command()


def test_the_cli_reference_page_is_current(root: object) -> None:
    page = reference.PAGE.read_text()
    assert reference.render(root) == page, f"docs/cli.md is stale: run {reference.REGENERATE}"


def test_every_command_and_option_is_documented(root: object) -> None:
    missing = reference.undocumented(root, reference.PAGE.read_text(), reference.README.read_text())
    assert missing == [], f"not in docs/cli.md or README.md: {missing}"


def test_the_tree_walk_sees_every_level(root: object) -> None:
    """Nested groups, on/off flags and group callbacks' options are all reached (a walk that stopped at the
    first level would pass the tests above on a page missing most of the CLI)."""
    nodes = {node.path: node for node in reference.walk(root)}
    assert {"outpost", "outpost ask", "outpost hub token create", "outpost feedback vote"} <= set(nodes)
    assert any("--no-check" in o.secondary_opts for o in nodes["outpost ask"].options)
    assert any("--all" in o.opts for o in nodes["outpost feedback"].options)  # a group's own callback option


def _section_bounds(page: str, command: str) -> tuple[int, int]:
    start = page.index(f"## `{command}`\n")
    end = page.find("\n## ", start + 1)
    return start, len(page) if end < 0 else end


def _without_row(page: str, command: str, row: str) -> str:
    """``page`` with the line holding ``row`` removed from ``command``'s section only."""
    start, end = _section_bounds(page, command)
    kept = "\n".join(line for line in page[start:end].splitlines() if row not in line)
    return page[:start] + kept + page[end:]


def test_a_page_missing_an_option_is_caught(root: object) -> None:
    page = _without_row(reference.PAGE.read_text(), "outpost ask", "| `-k`, `--top-k` |")
    assert reference.undocumented(root, page, "") == ["outpost ask -k"]  # search's own -k row does not count


def test_a_page_missing_a_command_is_caught_unless_the_readme_names_it(root: object) -> None:
    page = reference.PAGE.read_text().replace("## `outpost hub token revoke`", "## `gone`")
    assert reference.undocumented(root, page, "") == ["outpost hub token revoke"]
    assert reference.undocumented(root, page, "Revoke: `outpost hub token revoke 3`.") == []
