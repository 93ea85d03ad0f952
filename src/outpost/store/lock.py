"""One writer per collection, across processes: an ``flock`` on ``<collection>/.write.lock``.

SQLite serialises single transactions, but a write to a collection is longer than one transaction: an ingest
plans against version N (reads, parses, embeds) and only then applies; a sync plans, downloads into one staging
folder and applies. Two such writers at once would each plan on N, and the second would either conflict or, had
it read its base later, apply a plan made against rows that are gone. Holding this lock from planning to apply
makes each writer see the other's result instead. Readers (``outpost serve``, searches) never take it.

The lock is an ``flock`` so the kernel drops it when the holder dies (even by SIGKILL): a crashed writer never
leaves a collection locked. Within one process the lock is re-entrant per thread and serialises threads
(``flock`` alone would not: two opens in one process are two independent locks that would block each other).
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from outpost.errors import CollectionBusyError
from outpost.home import PRIVATE_FILE_MODE

__all__ = ["DEFAULT_WAIT_S", "LOCK_NAME", "pid_alive", "write_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = ".write.lock"
DEFAULT_WAIT_S = 600.0  # a sync may hold the lock for a whole download; OUTPOST_LOCK_WAIT_S overrides it
_POLL_S = 0.05


class _Held:
    """This process's hold on one collection's lock: a thread lock in front of one ``flock``-ed descriptor."""

    def __init__(self) -> None:
        self.thread_lock = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_HELD: dict[Path, _Held] = {}
_REGISTRY = threading.Lock()


def _entry(path: Path) -> _Held:
    with _REGISTRY:
        return _HELD.setdefault(path, _Held())


@contextmanager
def write_lock(folder: Path, name: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold collection ``name``'s write lock (in ``folder``) for the block; wait up to ``wait_s`` seconds for it.

    Says once (a warning) that it waits, and raises ``CollectionBusyError`` when the wait runs out.
    """
    if wait_s is None:
        wait_s = float(os.environ.get("OUTPOST_LOCK_WAIT_S", DEFAULT_WAIT_S))
    held = _entry((folder / LOCK_NAME).absolute())
    deadline = time.monotonic() + wait_s
    if not held.thread_lock.acquire(timeout=max(wait_s, 0.0)):
        raise _busy(name, wait_s)
    try:
        if held.depth == 0:
            held.fd = _acquire(folder / LOCK_NAME, name, deadline, wait_s)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                os.close(held.fd)  # closing the descriptor releases the flock
                held.fd = None
    finally:
        held.thread_lock.release()


def _acquire(path: Path, name: str, deadline: float, wait_s: float) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
    said = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise _busy(name, wait_s) from None
                if not said:
                    log.warning("another process is writing collection %r; waiting…", name)
                    said = True
                time.sleep(_POLL_S)
    except BaseException:
        os.close(fd)
        raise


def _busy(name: str, wait_s: float) -> CollectionBusyError:
    return CollectionBusyError(
        f"Another process is writing collection {name!r} and did not finish within {wait_s:g} s; "
        "try again when it is done (set OUTPOST_LOCK_WAIT_S to wait longer)"
    )


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs: temp files named after their writer's pid are only removed once it is
    gone (another process may be writing them right now)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
