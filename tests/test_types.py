"""mypy, strict (``[tool.mypy]`` in pyproject.toml), passes on src/: CI runs only pytest, so this holds it there.

``scripts/check`` runs the same command for people; this test fails with mypy's own report. It shares their
cache (``.mypy_cache``, ignored by git). A cold run (CI's, always) takes about 35 s on 2 cores since torch,
transformers, sentence-transformers, peft and ray are no longer analysed (``follow_imports = "skip"``: they were
three quarters of its 123 s); a warm one takes seconds.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mypy_strict_passes_on_src() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "src/outpost"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Success: no issues found" in run.stdout
