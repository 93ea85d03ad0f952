"""Crash points for durability tests: ``OUTPOST_FAULT=<point>`` makes the process SIGKILL itself there.

This is how the tests prove that a client killed mid-apply, or a hub killed mid-publish, leaves
either the old or the new version and never a mix. It costs one dictionary lookup when unset.
"""

from __future__ import annotations

import os
import signal
import threading

__all__ = ["fault"]


def fault(point: str) -> None:
    """SIGKILL here when ``OUTPOST_FAULT`` names ``point``; ``<point>+<seconds>`` kills that long after reaching it.

    The delayed form is how the reliability tests kill at random moments *inside* a step (an apply, a publish)
    rather than only at the named lines: the test draws the delay, a timer thread fires the signal.
    """
    wanted = os.environ.get("OUTPOST_FAULT")
    if wanted is None:
        return
    if wanted == point:
        _kill()
    elif wanted.startswith(point + "+"):
        timer = threading.Timer(float(wanted[len(point) + 1 :]), _kill)
        timer.daemon = True
        timer.start()


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
