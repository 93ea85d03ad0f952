"""Parse untrusted bytes under a time budget: a killable worker process, reused across files.

Why a process, when the loaders are pure Python functions:
- a thread cannot be killed, so a parser stuck in a loop (a crafted PDF, a quadratic regex in
  a library) would hold the ingest forever;
- ``SIGALRM`` only works in the main thread (the dashboard ingests from a server thread) and is
  not delivered while C code runs (lxml, lexbor, the ``re`` engine, zlib);
- a cooperative budget only covers code we wrote, not pypdf or python-docx.
A child process can be killed from any thread at any point, and its address-space ceiling
(``RLIMIT_AS``) also bounds what an unforeseen decompression bomb can allocate.

Cost: one interpreter start per ingest (0.5–1 s on 2 busy cores) and a copy of each file through
a pipe (under 1 ms per file); ``benchmarks/ingest_safety.py`` measures it. A file that times out or
crashes the worker costs one restart.

Protocol (the child side is ``worker.py``): the child says ``R`` (ready) once; per file the
parent sends ``>IQ`` (key length, data length), the key and the data; the child imports the
file's loader and answers ``S`` (started: the budget runs from here, so imports do not count
against it), parses, then answers ``D``, a ``>Q`` length and a JSON document or error. Only data
crosses the boundary (no pickle).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from outpost.errors import LoadError, OutpostError
from outpost.ingest.limits import ReadLimits
from outpost.records import Block, Document

__all__ = [
    "DONE",
    "JOB",
    "LENGTH",
    "READY",
    "STARTED",
    "IsolatedParser",
    "Parse",
    "document_json",
    "open_parser",
    "write_all",
]

Parse = Callable[[bytes, str], Document]

JOB = struct.Struct(">IQ")  # the protocol, shared with worker.py
LENGTH = struct.Struct(">Q")
READY, STARTED, DONE = b"R", b"S", b"D"
_STARTUP_S = 120.0  # interpreter start and loader import on a loaded 2-core machine


def document_json(doc: Document) -> dict[str, Any]:
    return {
        "key": doc.key,
        "sha256": doc.sha256,
        "title": doc.title,
        "kind": doc.kind,
        "size": doc.size,
        "blocks": [[b.text, b.page, list(b.headings)] for b in doc.blocks],
    }


def _document(data: dict[str, Any]) -> Document:
    blocks = tuple(Block(text, page, tuple(headings)) for text, page, headings in data["blocks"])
    return Document(data["key"], data["sha256"], data["title"], data["kind"], blocks, data["size"])


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


class _Timeout(Exception):
    pass


class _NotStarted(Exception):
    pass


class IsolatedParser:
    """Parses files in one child process; a file over budget kills it, the next file starts another.

    Example::

        with IsolatedParser(ReadLimits(200 * MB, 30.0)) as parse:
            doc = parse(data, "handbook.pdf")   # Document, or LoadError naming the file
    """

    def __init__(self, limits: ReadLimits) -> None:
        self.limits = limits
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready = False

    def __enter__(self) -> IsolatedParser:
        self._start()  # overlaps the interpreter start with reading the first files
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, data: bytes, key: str) -> Document:
        proc = self._start()
        try:
            reply = self._exchange(proc, data, key)
        except _Timeout:
            self._stop(kill=True)
            raise LoadError(
                key, f"parsing took longer than {self.limits.timeout_s:g} s (setting file_timeout_s); abandoned"
            ) from None
        except _NotStarted:
            self._stop(kill=True)
            raise LoadError(key, f"the parser process did not start within {_STARTUP_S:g} s") from None
        except (OSError, EOFError):
            code = self._stop(kill=True)
            raise LoadError(key, f"the parser process died while reading this file ({_describe_exit(code)})") from None
        if "error" in reply:
            raise LoadError(key, reply["error"])
        return _document(reply["document"])

    def close(self) -> None:
        """End the worker. It holds no state between files, so killing it is safe, and it does not
        make the caller wait for an interpreter that is still starting (nothing changed: no job)."""
        self._stop(kill=True)

    # -- the worker's life ---------------------------------------------------------------------

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc, self._ready = _spawn(self.limits), False
        return self._proc

    def _stop(self, kill: bool) -> int | None:
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if kill and proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]
        return code

    def _exchange(self, proc: subprocess.Popen[bytes], data: bytes, key: str) -> dict[str, Any]:
        """Send one job, wait for its reply. The worker reads whole jobs as soon as it is ready,
        so after ``READY`` the (blocking) writes cannot stall on a worker that is not reading."""
        out = proc.stdout.fileno()  # type: ignore[union-attr]
        if not self._ready:
            self._expect(out, READY)
            self._ready = True
        key_bytes = key.encode("utf-8")
        stdin = proc.stdin.fileno()  # type: ignore[union-attr]
        write_all(stdin, JOB.pack(len(key_bytes), len(data)) + key_bytes)
        write_all(stdin, data)
        self._expect(out, STARTED)
        deadline = time.monotonic() + self.limits.timeout_s
        if _read_exact(out, 1, deadline) != DONE:
            raise EOFError("protocol error")
        (length,) = LENGTH.unpack(_read_exact(out, LENGTH.size, deadline))
        return json.loads(_read_exact(out, length, deadline))  # type: ignore[no-any-return]

    @staticmethod
    def _expect(out: int, signal_byte: bytes) -> None:
        """Wait (at most ``_STARTUP_S``: interpreter start, loader imports) for a handshake byte."""
        try:
            got = _read_exact(out, 1, time.monotonic() + _STARTUP_S)
        except _Timeout:
            raise _NotStarted from None
        if got != signal_byte:
            raise EOFError("protocol error")


def _spawn(limits: ReadLimits) -> subprocess.Popen[bytes]:
    """Start the worker in the folder holding the ``outpost`` package.

    The working directory matters: ``python -m`` puts it first on ``sys.path``, and ingest is
    often run from inside the (untrusted) folder being ingested, which could hold an ``outpost/``.
    """
    package_parent = str(Path(__file__).resolve().parents[2])  # src/outpost/ingest/isolation.py → src
    command = [sys.executable, "-m", "outpost.ingest.worker", str(limits.parse_memory_bytes)]
    try:
        return subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=package_parent,
            bufsize=0,
            close_fds=True,
        )
    except OSError as exc:
        raise OutpostError(
            f"Cannot start the parser process ({exc}); set file_timeout_s = 0 to parse in-process"
        ) from exc


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` may write less than asked on a pipe: loop until all of it is out."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int, deadline: float) -> bytes:
    """``size`` bytes from ``fd`` before ``deadline``, else ``_Timeout``; ``EOFError`` if it closes."""
    parts: list[bytes] = []
    while size:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise _Timeout
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("worker closed its output")
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


@contextlib.contextmanager
def open_parser(limits: ReadLimits) -> Iterator[Parse]:
    """The parser an ingest uses: isolated with a budget, or in-process when ``timeout_s`` is 0."""
    if limits.timeout_s <= 0:
        from outpost.ingest.loaders import load_bytes

        yield load_bytes
        return
    with IsolatedParser(limits) as parser:
        yield parser
