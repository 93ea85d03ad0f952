"""The full-size reliability proofs of issue 11, with their figures (docs/reliability.md).

CI runs ``tests/reliability`` bounded (a few trials, 15-20 s of load). This runs the same tests at full size —
50 random kills per proof, 60 s of load, 50 sync clients, 16 API clients, 100 applies — and prints every
proof's figures as JSON lines (collected through ``OUTPOST_RELIABILITY_RESULTS``), next to the machine's load.

    .venv/bin/python benchmarks/reliability.py                  # everything (long: the kill proofs dominate)
    .venv/bin/python benchmarks/reliability.py -k r1 --trials 50 # one proof
    .venv/bin/python benchmarks/reliability.py -k 16_api --api-clients 16 --seconds 60   # serve under 16 clients
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", default="", help="pytest -k expression: which proofs to run (default: all)")
    parser.add_argument("--trials", type=int, default=50, help="random kills per kill proof (issue: >= 50 / >= 20)")
    parser.add_argument("--seconds", type=float, default=60, help="duration of each load proof")
    parser.add_argument("--clients", type=int, default=50, help="concurrent sync clients (R6)")
    parser.add_argument("--api-clients", type=int, default=16, help="concurrent API clients on `outpost serve`")
    parser.add_argument("--applies", type=int, default=100, help="applies by another process under `outpost serve`")
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as results:
        env = {
            **os.environ,
            "OUTPOST_RELIABILITY_RESULTS": results.name,
            "OUTPOST_RELIABILITY_TRIALS": str(args.trials),
            "OUTPOST_RELIABILITY_SECONDS": str(args.seconds),
            "OUTPOST_RELIABILITY_CLIENTS": str(args.clients),
            "OUTPOST_RELIABILITY_API_CLIENTS": str(args.api_clients),
            "OUTPOST_RELIABILITY_APPLIES": str(args.applies),
        }
        load_before = os.getloadavg()[0]
        start = time.monotonic()
        command = [sys.executable, "-m", "pytest", "tests/reliability", "-q", "-p", "no:cacheprovider"]
        done = subprocess.run([*command, *(["-k", args.k] if args.k else [])], cwd=ROOT, env=env)
        elapsed = time.monotonic() - start
        print(f"\nmachine load (1 min) before: {load_before:.1f}, after: {os.getloadavg()[0]:.1f}; {elapsed:.0f} s")
        for line in Path(results.name).read_text().splitlines():
            print(json.dumps(json.loads(line), sort_keys=True))
    Path(results.name).unlink(missing_ok=True)
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())
