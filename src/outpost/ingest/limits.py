"""The bounds one ingest puts on each file: its size, its parse time, its parser's memory.

They come from the settings (``max_file_mb``, ``file_timeout_s``, env ``OUTPOST_MAX_FILE_MB`` and
``OUTPOST_FILE_TIMEOUT_S``); the pipeline takes them as a value so that its stages stay plain
functions of their inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from outpost.ingest.fileread import MB
from outpost.settings import Settings

__all__ = ["ReadLimits"]

_MIN_PARSE_MEMORY = 2048 * MB
_PARSE_MEMORY_PER_INPUT_BYTE = 8


@dataclass(frozen=True)
class ReadLimits:
    """``max_bytes``: larger files are refused before parsing; ``timeout_s``: a parser still
    running after this long is killed and the file reported (0 parses in-process, unbounded).

    Example::

        ReadLimits.from_settings(Settings())  # 200 MB, 30 s
    """

    max_bytes: int
    timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        return cls(max_bytes=settings.max_file_mb * MB, timeout_s=settings.file_timeout_s)

    @classmethod
    def default(cls) -> ReadLimits:
        """The configured limits (defaults < config.toml < environment)."""
        return cls.from_settings(Settings())

    @property
    def parse_memory_bytes(self) -> int:
        """Address space the parser process may add to what it maps at start: room for the largest
        allowed file's parse (text, XML trees and page objects take several times the input), never
        under 2 GiB. It only bounds what an unforeseen decompression bomb can take; not a budget."""
        return max(_MIN_PARSE_MEMORY, _PARSE_MEMORY_PER_INPUT_BYTE * self.max_bytes)
