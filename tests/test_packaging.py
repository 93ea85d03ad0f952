"""Dependencies are declared, pinned and installed as pyproject.toml, constraints.txt and scripts/setup.sh say.

CI installs with ``pip install -c constraints.txt``; these tests keep the three files telling the same story:
every third-party module that ``src/`` imports comes from a declared distribution, every declared requirement
has an exact pin that satisfies its range, and the venv the tests run in holds the pinned versions.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
# Modules whose distribution is not installed in this venv (optional extras, or another Python's backport),
# so importlib.metadata cannot name it.
NOT_INSTALLED_HERE = {"pynvml": "nvidia-ml-py", "tomli": "tomli"}


def _project() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(*, extras: tuple[str, ...]) -> list[Requirement]:
    project = _project()
    lines = list(project["dependencies"])  # type: ignore[call-overload]
    optional: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    for extra in extras:
        lines += optional[extra]
    return [Requirement(line) for line in lines]


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _third_party_imports() -> dict[str, str]:
    """Top-level module → one file importing it, for every absolute import in src/outpost (lazy ones too)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "src" / "outpost").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top != "outpost" and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_distribution_is_declared() -> None:
    all_extras = tuple(_project()["optional-dependencies"])  # type: ignore[arg-type]
    declared = {canonicalize_name(r.name) for r in _requirements(extras=all_extras)}
    installed = metadata.packages_distributions()
    missing = []
    for module, where in _third_party_imports().items():
        dists = installed.get(module) or [NOT_INSTALLED_HERE.get(module, module)]
        if not {canonicalize_name(d) for d in dists} & declared:
            missing.append(f"{module} (imported in {where}; distribution {', '.join(dists)})")
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(missing)


def test_declared_requirements_have_pins_inside_their_ranges() -> None:
    pins = _pins()
    problems = []
    for req in _requirements(extras=("test",)):
        if req.marker is not None and not req.marker.evaluate():
            continue
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req.name} has no pin")
        elif not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req.name}=={pin} is outside {req}")
    assert not problems, "constraints.txt vs pyproject.toml (run scripts/update-constraints): " + "; ".join(problems)


def test_the_venv_holds_the_pinned_versions() -> None:
    """What the tests run on is what CI installs; a package upgraded by hand needs scripts/update-constraints."""
    drift = []
    for name, pin in _pins().items():
        try:
            have = Version(metadata.version(name))
        except metadata.PackageNotFoundError:
            continue  # pinned for an extra this venv does not carry
        if Version(have.public) != pin:
            drift.append(f"{name} {have} (pinned {pin})")
    assert not drift, "installed versions differ from constraints.txt: " + "; ".join(drift)


def test_setup_installs_the_pinned_cpu_torch_first() -> None:
    """setup.sh asks for torch==X before the project, so pip takes the CPU wheel on disk; X is the pin."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    torch_first = re.search(r'pip_install "torch==([^"]+)"\n(?:.*\n)*?pip_install -e', setup)
    assert torch_first, "setup.sh must install torch==<pin> before the project"
    assert Version(torch_first[1]) == _pins()["torch"]
    (torch_req,) = [r for r in _requirements(extras=()) if r.name == "torch"]
    assert torch_req.specifier.contains(torch_first[1])
