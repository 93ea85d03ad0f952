"""Data flows one way: the import graph of ``src/outpost`` is checked against its layers, and has no cycles.

Every ``import`` and ``from … import`` is read with ``ast`` — at module level, inside functions, under
``if TYPE_CHECKING`` — because a lazy import is still a dependency (``llm`` and ``models`` once imported each
other that way). Relative imports are resolved; ``from pkg import name`` counts as an import of the module
``pkg.name`` when that is a module, else of ``pkg`` itself (its ``__init__``).

**Units and layers.** A *unit* is a direct child of the package: a top-level module (``outpost.sync``) or a
subpackage (``outpost.hub``); the package's own ``__init__`` (the ``Outpost`` facade and ``__version__``) is the
unit ``outpost``. Each unit belongs to one layer, bottom to top:

- ``base``: plain data and shared plumbing that knows no domain (records, errors, names, settings, home, …);
- ``core``: ingest → embed → store → retrieve → rag, the LLM runtime, packs, adapters (DESIGN §1: the core never
  imports hub, api, cli or sync);
- ``services``: what composes the core for one purpose — the ``Outpost`` facade, the model registry, evaluation,
  the hub client and configs, sync, routing;
- ``apps``: transports and servers — the hub, the local API, the dashboard, the CLI.

A unit may import its own layer and the layers below, never one above. A new unit must be placed in
``LAYERS`` (the test says so), so the map cannot silently fall behind the code.

**Cycles** are refused at two granularities: between units (``outpost.a`` → ``outpost.b`` → ``outpost.a``,
whatever modules carry the edges) and between modules (each ``.py`` file, a package's ``__init__`` being one
node), so inside a package modules also import one way.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

ORDER = ("base", "core", "services", "apps")
LAYERS: dict[str, set[str]] = {
    "base": {
        "records",
        "errors",
        "names",
        "settings",
        "home",
        "hashing",
        "faults",
        "fsutil",
        "db",
        "metrics",
        "plugins",
        "cpus",
    },
    "core": {
        "ingest",
        "embed",
        "store",
        "retrieve",
        "rag",
        "evidence",
        "llm",
        "packs",
        "adapt",
        "learn",
        "feedback",
        "labels",
        "audit",
    },
    "services": {
        "outpost",
        "app",
        "models",
        "finetune",
        "evaluate",
        "hubs",
        "hubclient",
        "sync",
        "remotes",
        "routing",
        "costs",
    },
    "apps": {"hub", "api", "dashboard", "cli", "streaming", "__main__"},
}
# Cycles known and not yet untangled, each with its reason. The test fails when one disappears, so the list
# only shrinks (remove the entry then).
# (api ↔ dashboard went in issue 14: the dashboard answers through a ``Host`` protocol that ApiService fulfils.)
KNOWN_CYCLES: dict[frozenset[str], str] = {}

# -- the checker ------------------------------------------------------------------------------------------


def modules(src: Path, package: str) -> dict[str, Path]:
    """Module name → file, for every ``.py`` under ``src/package`` (a package's ``__init__`` is the package)."""
    found: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = path.relative_to(src).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module that ``name`` lives in: itself, or the longest known prefix (``pkg.Class`` → ``pkg``)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def _imported_names(tree: ast.AST, this_package: str) -> Iterable[str]:
    """Every dotted name an import statement anywhere in ``tree`` refers to, relative ones made absolute."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = this_package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (itself excluded)."""
    known = modules(src, package)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        this_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for imported in _imported_names(ast.parse(path.read_text(), str(path)), this_package):
            owner = _owner(imported, known) if imported.split(".")[0] == package else None
            if owner and owner != name:
                targets.add(owner)
        graph[name] = targets
    return graph


def unit(module: str, package: str) -> str:
    """``outpost.hub.learning`` → ``hub``; ``outpost`` (the package's ``__init__``) → ``outpost``."""
    return module.split(".")[1] if "." in module else package


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted: the import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def check(
    src: Path,
    package: str,
    layers: dict[str, set[str]],
    order: tuple[str, ...],
    known_cycles: Iterable[frozenset[str]] = (),
) -> list[str]:
    """Every layering problem in ``src/package``, one line each (empty when the imports flow one way).

    A unit cycle listed in ``known_cycles`` is not a problem, but one listed there that no longer exists is.
    """
    graph = import_graph(src, package)
    layer_of = {u: layer for layer, units in layers.items() for u in units}
    rank = {layer: i for i, layer in enumerate(order)}
    problems = [
        f"unit {package}.{u} is in no layer: add it to LAYERS in tests/test_layering.py"
        for u in sorted({unit(m, package) for m in graph} - set(layer_of))
    ]
    for module, targets in sorted(graph.items()):
        source = layer_of.get(unit(module, package))
        for target in sorted(targets):
            goal = layer_of.get(unit(target, package))
            if source and goal and rank[goal] > rank[source]:
                problems.append(f"{module} ({source}) imports {target} ({goal}): a layer above it")
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        mine = unit(module, package)
        units.setdefault(mine, set()).update(unit(t, package) for t in targets if unit(t, package) != mine)
    unit_cycles = cycles(units)
    known = set(known_cycles)
    problems += [f"import cycle between units: {' ↔ '.join(c)}" for c in unit_cycles if frozenset(c) not in known]
    problems += [
        f"known cycle {' ↔ '.join(sorted(c))} is gone: remove it from KNOWN_CYCLES"
        for c in known
        if c not in {frozenset(found) for found in unit_cycles}
    ]
    problems += [f"import cycle between modules: {' ↔ '.join(c)}" for c in cycles(graph)]
    return problems


# -- the tests ----------------------------------------------------------------------------------------------


def test_outpost_imports_flow_one_way() -> None:
    assert check(SRC, "outpost", LAYERS, ORDER, KNOWN_CYCLES) == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TOY_LAYERS = {"base": {"records"}, "core": {"store", "llm", "models"}, "apps": {"hub", "toy"}}
TOY_ORDER = ("base", "core", "apps")
CLEAN = {
    "toy/__init__.py": "from toy.store import Store\n",
    "toy/records.py": "X = 1\n",
    "toy/store.py": "from toy.records import X\nclass Store: ...\n",
    "toy/llm/__init__.py": "",
    "toy/llm/base.py": "from ..records import X\n",
    "toy/models.py": "from toy.llm import base\n",
    "toy/hub/__init__.py": "",
    "toy/hub/server.py": "import toy.store\nfrom toy import records\n",
}


def test_the_checker_passes_a_tree_that_flows_one_way(tmp_path: Path) -> None:
    src = _tree(tmp_path, CLEAN)
    assert check(src, "toy", TOY_LAYERS, TOY_ORDER) == []
    graph = import_graph(src, "toy")
    assert graph["toy.llm.base"] == {"toy.records"}  # a relative import, resolved
    assert graph["toy.models"] == {"toy.llm.base"}  # `from pkg import submodule` is an edge to the submodule
    assert graph["toy.hub.server"] == {"toy.store", "toy.records"}


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        # a lazy import inside a function still counts
        ("toy/store.py", "def f():\n    from toy.hub.server import app\n", "toy.store (core) imports toy.hub.server"),
        # so does one only for type checkers
        (
            "toy/records.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.store import Store\n",
            "toy.records (base) imports toy.store (core)",
        ),
        # a relative import that climbs into a higher layer
        ("toy/llm/base.py", "from ..hub import server\n", "toy.llm.base (core) imports toy.hub.server"),
        # two core units that need each other (layers allow it; the cycle check does not)
        ("toy/llm/base.py", "def load():\n    import toy.models\n", "import cycle between units: llm ↔ models"),
        # a cycle inside one package
        ("toy/hub/a.py", "from toy.hub import server\n", None),
        # a unit nobody placed in a layer
        ("toy/newthing.py", "X = 2\n", "unit toy.newthing is in no layer"),
    ],
)
def test_the_checker_refuses_a_forbidden_edge_a_cycle_or_an_unplaced_unit(
    tmp_path: Path, path: str, text: str, expected: str | None
) -> None:
    files = dict(CLEAN)
    files[path] = text
    if expected is None:  # the module cycle: server imports a back
        files["toy/hub/server.py"] = CLEAN["toy/hub/server.py"] + "from toy.hub import a\n"
        expected = "import cycle between modules: toy.hub.a ↔ toy.hub.server"
    problems = check(_tree(tmp_path, files), "toy", TOY_LAYERS, TOY_ORDER)
    assert any(p.startswith(expected) for p in problems), problems


def test_a_known_cycle_is_tolerated_only_while_it_exists(tmp_path: Path) -> None:
    files = {**CLEAN, "toy/llm/base.py": "def load():\n    import toy.models\n"}
    known = [frozenset({"llm", "models"})]
    # the module cycle llm.base ↔ models is still reported: only the unit cycle was declared known
    assert check(_tree(tmp_path / "a", files), "toy", TOY_LAYERS, TOY_ORDER, known) == [
        "import cycle between modules: toy.llm.base ↔ toy.models"
    ]
    gone = check(_tree(tmp_path / "b", CLEAN), "toy", TOY_LAYERS, TOY_ORDER, known)
    assert gone == ["known cycle llm ↔ models is gone: remove it from KNOWN_CYCLES"]
