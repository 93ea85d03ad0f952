"""Long dashboard jobs (ingest, sync, pull) in background threads, their progress kept as events.

A job runs one core call with its existing ``(stage, advance, total)`` progress callback; each
call becomes an event in the job's list, so a browser that connects late (or reconnects) replays
what it missed and then follows live, through server-sent events. Jobs live in memory: they are
about this server's lifetime, and the data they change is already durable in the stores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from outpost.errors import OutpostError

__all__ = ["Job", "JobManager", "sse"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def sse(event: str, data: Any, event_id: int | None = None) -> str:
    """One server-sent event (``data`` as JSON on one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def plain_error(exc: BaseException) -> str:
    """What the page shows: an Outpost error says how to fix it; anything else is named plainly."""
    if isinstance(exc, OutpostError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Job:
    """One background task and everything it reported, in order."""

    kind: str
    label: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    events: list[tuple[str, Any]] = field(default_factory=list)
    done: bool = False
    error: str | None = None
    started: float = field(default_factory=time.time)
    _totals: dict[str, list[int]] = field(default_factory=dict)

    def emit(self, event: str, data: Any) -> None:
        self.events.append((event, data))  # list.append is atomic; readers only read by index

    def progress(self, stage: str, advance: int, total: int) -> None:
        """The core's progress callback: keeps a running count per stage and emits it."""
        done_total = self._totals.setdefault(stage, [0, total])
        done_total[0] += advance
        done_total[1] = total
        self.emit("progress", {"stage": stage, "done": done_total[0], "total": total})

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "done": self.done, "error": self.error}


class JobManager:
    """Starts jobs in daemon threads and streams their events."""

    def __init__(self, keep: int = 50) -> None:
        self.jobs: dict[str, Job] = {}
        self.keep = keep
        self._lock = threading.Lock()

    def start(self, kind: str, label: str, work: Callable[[Job], Any]) -> Job:
        """Run ``work(job)`` in the background; its return value is the job's ``result`` event."""
        job = Job(kind, label)
        with self._lock:
            self.jobs[job.id] = job
            for old in list(self.jobs)[: max(0, len(self.jobs) - self.keep)]:
                if self.jobs[old].done:
                    del self.jobs[old]
        threading.Thread(target=self._run, args=(job, work), name=f"outpost-{kind}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[Job], Any]) -> None:
        try:
            job.emit("result", work(job))
        except Exception as exc:  # a failed job reports and ends; the server and the page keep working
            if not isinstance(exc, OutpostError):
                log.exception("dashboard job %s failed", job.kind)
            job.error = plain_error(exc)
            job.emit("failed", {"message": job.error})
        finally:
            job.done = True
            job.emit("end", job.summary())

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def running(self, kind: str, label: str) -> Job | None:
        """A job of this kind and label still running (a second click joins it instead of racing it)."""
        return next((j for j in self.jobs.values() if j.kind == kind and j.label == label and not j.done), None)

    async def stream(self, job: Job, start: int = 0, poll: float = 0.05) -> AsyncIterator[str]:
        """Replay from ``start`` then follow until the job ends (``id`` lets EventSource resume)."""
        index = start
        while True:
            while index < len(job.events):
                event, data = job.events[index]
                index += 1
                yield sse(event, data, index)
                if event == "end":
                    return
            await asyncio.sleep(poll)
