"""The CLI reference generator (``scripts/cli_reference.py``) loaded as a module, for the tests that walk the
command tree (tests/cli/test_cli_docs.py, tests/test_settings.py): scripts/ is not a package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "cli_reference.py"


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cli_reference", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


reference = _load_reference()
