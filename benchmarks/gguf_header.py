"""Reading a GGUF header: Outpost's reader (models/gguf_header.py) against gguf.GGUFReader on the same files.

Both bundled models: SmolLM2 135M (49k-token vocabulary) and Gemma 3 270M (262k tokens, assembled from its part
packages into a temporary folder). Each reader runs ``--runs`` times per file, alternating, with the header cache
cleared before every Outpost read, so both sides pay the full parse every time. Also checks that the metadata the
registry keeps is identical either way (the fields both readers expose).

    nice -n 10 .venv/bin/python benchmarks/gguf_header.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dump_json, machine, table  # noqa: E402
from outpost.llm.bundled import assemble_bundled, resolve_gguf  # noqa: E402
from outpost.models import gguf_header  # noqa: E402


def _reference_metadata(path: Path) -> dict[str, Any]:
    """The registry's metadata as gguf.GGUFReader gives it (its pre-issue-14 code path, scalars only)."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = field("general.architecture") or ""
    return {
        "architecture": arch,
        "layers": field(f"{arch}.block_count"),
        "context_length": field(f"{arch}.context_length"),
        "heads": field(f"{arch}.attention.head_count"),
        "heads_kv": field(f"{arch}.attention.head_count_kv"),
        "tensors": len(reader.tensors),
    }


def _outpost(path: Path) -> dict[str, Any]:
    gguf_header._read_cached.cache_clear()  # a cold parse every time, like the reference
    header = gguf_header.read_gguf_header(path)
    meta = header.metadata()
    keys = ("architecture", "layers", "context_length", "heads", "heads_kv")
    return {**{k: meta[k] for k in keys}, "tensors": len(header.tensors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="outpost-gguf-bench-"))
    files = {"smollm2": resolve_gguf("smollm2")}
    assembled = assemble_bundled("gemma3-270m", folder)
    if assembled is not None:
        files["gemma3-270m"] = assembled[0]
    result: dict[str, Any] = {"machine": machine(), "runs": args.runs, "files": {}}
    for name, path in files.items():
        times: dict[str, list[float]] = {"outpost": [], "gguf.GGUFReader": []}
        answers: dict[str, dict[str, Any]] = {}
        for _ in range(args.runs):
            for side, read in (("outpost", _outpost), ("gguf.GGUFReader", _reference_metadata)):
                start = time.perf_counter()
                answers[side] = read(path)
                times[side].append(time.perf_counter() - start)
        ours, theirs = (statistics.median(times[s]) for s in ("outpost", "gguf.GGUFReader"))
        result["files"][name] = {
            "bytes": path.stat().st_size,
            "outpost_s_median": ours,
            "gguf_reader_s_median": theirs,
            "speedup": theirs / ours,
            "same_metadata": answers["outpost"] == answers["gguf.GGUFReader"],
        }
    for path in folder.glob("*"):
        os.unlink(path)
    folder.rmdir()
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(dump_json(result))
        return
    m = result["machine"]
    print(f"{m['cores']} cores, {m['cpu']}; load average at start {m['loadavg_1m_at_start']}")
    rows = [
        (name, f"{r['bytes'] / 1e6:.0f} MB", f"{r['outpost_s_median']:.2f}", f"{r['gguf_reader_s_median']:.2f}",
         f"{r['speedup']:.1f}x", r["same_metadata"])
        for name, r in result["files"].items()
    ]  # fmt: skip
    print(table(rows, ["model", "file", "outpost s", "GGUFReader s", "speedup", "same metadata"]))
    print(f"median of {args.runs} cold reads each; load at end {result['loadavg_1m_at_end']}")


if __name__ == "__main__":
    main()
