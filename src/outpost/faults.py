"""Crash points for durability tests: ``OUTPOST_FAULT=<point>`` makes the process SIGKILL itself there.

This is how the tests prove that a client killed mid-apply, or a hub killed mid-publish, leaves
either the old or the new version and never a mix. It costs one dictionary lookup when unset.
"""

from __future__ import annotations

import os
import signal

__all__ = ["fault"]


def fault(point: str) -> None:
    if os.environ.get("OUTPOST_FAULT") == point:
        os.kill(os.getpid(), signal.SIGKILL)
