"""The parse worker: ``python -m outpost.ingest.worker MEMORY_BYTES``, started by ``isolation.py``.

It reads jobs (key, bytes) from stdin until the parent closes it, and answers each with a JSON
document or error on a private copy of stdout (fd 1 itself is pointed at /dev/null, so a library
that prints cannot corrupt the protocol). Its address space is capped at what it maps after its
imports plus ``MEMORY_BYTES``, so the ceiling bounds parsing only. It keeps no state between
files, which is what lets the parent kill it at any moment.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from outpost.errors import LoadError
from outpost.ingest.isolation import DONE, JOB, LENGTH, READY, STARTED, document_json, write_all
from outpost.ingest.loaders import load_bytes, preload

__all__ = ["main"]


def _read_job(stream: BinaryIO) -> tuple[str, bytes] | None:
    """The next (key, data), or ``None`` once the parent has closed the pipe."""
    header = stream.read(JOB.size)
    if len(header) < JOB.size:
        return None
    key_length, data_length = JOB.unpack(header)
    key = stream.read(key_length).decode("utf-8")
    data = stream.read(data_length)
    return (key, data) if len(data) == data_length else None


def _parse_reply(data: bytes, key: str, announce: Callable[[], None]) -> dict[str, Any]:
    """Import the loader, say "started" (the parent's clock runs from here), parse."""
    preload(key)
    announce()
    try:
        return {"document": document_json(load_bytes(data, key))}
    except LoadError as exc:
        return {"error": exc.reason}
    except MemoryError:
        return {"error": "ran out of memory while parsing (the parser's memory ceiling); skipped"}


def _address_space() -> int:
    """Bytes of address space this process already maps (Linux; 0 where /proc is absent)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _limit_memory(extra: int) -> None:
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        limit = _address_space() + extra
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def main() -> None:
    """Worker loop: one job at a time until the parent closes stdin."""
    _limit_memory(int(sys.argv[1]))
    protocol = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    write_all(protocol, READY)
    while (job := _read_job(sys.stdin.buffer)) is not None:
        key, data = job
        reply = json.dumps(_parse_reply(data, key, lambda: write_all(protocol, STARTED))).encode("utf-8")
        write_all(protocol, DONE + LENGTH.pack(len(reply)) + reply)


if __name__ == "__main__":
    main()
