"""What the ingest defences cost, and what they removed: parse isolation overhead, regexes before/after.

Two measurements, each against a baseline in the same process:

1. **The parse worker** (``outpost/ingest/isolation.py``): the read stage (``read_batch`` over every
   file, the way ``plan`` runs it) with parsing in the worker process under a time budget, against
   parsing in-process (``file_timeout_s = 0``), over the bundled samples and over NFCorpus written as
   Markdown (3,633 files by default). Runs alternate, best of ``--repeat``; the difference is the
   price of being able to abandon a file.
2. **The quadratic patterns** that the Markdown and CSV loaders used, on the adversarial inputs that
   trigger them, against their linear replacements on the same inputs (old at 32 KB; new also at
   1 MB to show it stays linear).

Run: ``.venv/bin/python benchmarks/ingest_safety.py`` (``--docs 0`` all NFCorpus documents,
``--repeat 3``). Nothing is downloaded; no model is loaded.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import cpu_model, load_corpus, log, table, write_markdown
from outpost.ingest import ReadLimits, discover, read_batch
from outpost.ingest.fileread import MB
from outpost.ingest.isolation import open_parser
from outpost.ingest.loaders.csv import _delimiter
from outpost.ingest.loaders.markdown import _front_matter_title, strip_html

SAMPLES = Path(__file__).resolve().parents[1] / "src" / "outpost" / "data" / "sample"
BATCH = 32  # what the pipeline uses

# the patterns as they were before the fix
OLD_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)
OLD_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
OLD_TAG = re.compile(r"<[^>]+>")


def read_stage(folder: Path, timeout_s: float) -> float:
    """Seconds to read and parse every file under ``folder`` as ``plan`` does (batches of 32)."""
    files = discover([folder])
    limits = ReadLimits(200 * MB, timeout_s)
    start = time.perf_counter()
    with open_parser(limits) as parse:
        for i in range(0, len(files), BATCH):
            docs, _, errors = read_batch(files[i : i + BATCH], {}, limits, parse)
            assert not errors, errors[:3]
    return time.perf_counter() - start


def isolation_rows(folders: dict[str, Path], repeat: int) -> list[list[str]]:
    rows = []
    for name, folder in folders.items():
        n = len(discover([folder]))
        inproc, isolated = [], []
        for _ in range(repeat):  # alternate, so load on the machine hits both alike
            inproc.append(read_stage(folder, 0))
            isolated.append(read_stage(folder, 30))
        a, b = min(inproc), min(isolated)
        rows.append(
            [
                name,
                f"{n:,}",
                f"{a:.2f} s",
                f"{b:.2f} s",
                f"{b - a:+.2f} s",
                f"{(b - a) / n * 1000:+.2f} ms",
                f"{b / a:.2f}×",
            ]
        )
    return rows


def timed(fn: Callable[[str], object], text: str) -> float:
    start = time.perf_counter()
    fn(text)
    return time.perf_counter() - start


def regex_rows() -> list[list[str]]:
    kb32, mb1 = 32 * 1024, 1024 * 1024
    title = lambda n: "title: x" + " " * n + "y"  # noqa: E731
    comments = lambda n: "<!--" * (n // 4)  # noqa: E731
    tags = lambda n: "<" * n  # noqa: E731
    sniff = lambda n: ',"' * (n // 2)  # noqa: E731
    cases = [
        ("front-matter title", title, lambda s: OLD_TITLE.search(s), _front_matter_title),
        ("HTML comments (unclosed)", comments, lambda s: OLD_COMMENT.sub(" ", s), strip_html),
        ("HTML tags (unclosed)", tags, lambda s: OLD_TAG.sub(" ", s), strip_html),
        ("CSV delimiter guess", sniff, _sniff, lambda s: _delimiter(s, "x.csv")),
    ]
    rows = []
    for name, make, old, new in cases:
        small, big = make(kb32), make(mb1)
        before, after, linear = timed(old, small), timed(new, small), timed(new, big)
        rows.append([name, f"{before:.3f} s", f"{after:.4f} s", f"{linear:.4f} s"])
    return rows


def _sniff(text: str) -> None:
    with contextlib.suppress(csv.Error):
        csv.Sniffer().sniff(text[: 64 * 1024], delimiters=",;\t|")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", type=int, default=0, help="NFCorpus documents (0: all 3,633)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("Outpost ingest safety benchmark")
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}; load avg {os.getloadavg()[0]:.2f}; {time.ctime()}\n")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "nfcorpus"
        log("writing NFCorpus as Markdown")
        write_markdown(load_corpus(args.docs or None), corpus)
        log("timing the read stage")
        rows = isolation_rows({"bundled samples": SAMPLES, "NFCorpus (Markdown)": corpus}, args.repeat)
    header = ["input", "files", "in-process", "worker", "difference", "per file", "ratio"]
    print(f"Read stage (read + parse), best of {args.repeat}:\n" + table(rows, header) + "\n")
    log("timing the old and new patterns")
    print("Adversarial inputs:\n" + table(regex_rows(), ["pattern", "old @32 KB", "new @32 KB", "new @1 MB"]))
    print(f"\nload avg at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
