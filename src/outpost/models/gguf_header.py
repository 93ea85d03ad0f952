"""The one GGUF header reader: what the registry lists and what the advisor sizes, from the same bytes.

The registry (``models list/show``) and the hardware advisor (``models fit``, the runtime's GPU layer plan) once
had a reader each, and they drifted: the registry named an all-F32 file ``ALL_F32`` and a file without
``general.file_type`` ``""``, where the advisor said ``F32`` and named the dominant tensor type; only the advisor
read per-layer head counts at their largest and the head size from ``attention.key_length`` (Gemma 3: 256, not
``n_embd / n_head`` = 160); they raised different errors for the same bad file. Both now read a
:class:`GGUFHeader` from :func:`read_gguf_header`.

Only the header is parsed, straight from the file (memory-mapped): ``gguf.GGUFReader`` builds a numpy view per
token of the vocabulary (Gemma 3 has 262k) and was 40-60x slower on the bundled models
(``benchmarks/gguf_header.py``), for metadata that needs none of them. Long arrays (the tokenizer's) are
skipped, per-layer arrays kept. The ``gguf`` package still supplies the format's constants (type sizes,
file-type names).

A file that is not a GGUF, or ends before its header or its tensor data do (a download cut short), raises
:class:`~outpost.errors.LoadError` saying which; a missing file raises ModelNotFoundError.

    >>> header = read_gguf_header(path)
    >>> header.architecture, header.arch_int("block_count"), header.quantization
    ('llama', 30, 'Q4_1')
"""

from __future__ import annotations

import functools
import mmap
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from outpost.errors import LoadError, ModelNotFoundError

__all__ = ["GGUFHeader", "GGUFTensor", "gguf_metadata", "read_gguf_header"]

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # v1 (2023) used 32-bit counts; llama.cpp itself no longer loads it
DEFAULT_ALIGNMENT = 32
#: Arrays up to this length are kept (per-layer values); longer ones (vocabularies, merges) are skipped.
MAX_KEPT_ARRAY = 4096
MAX_DIMS = 8  # GGML tensors have at most 4 dimensions; more means the header is garbage

# GGUF value types (the spec's numbering) → struct format; 8 is STRING, 9 is ARRAY.
_STRING, _ARRAY = 8, 9
_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor's entry in the header: where its data lies and how big it is (``n_bytes`` 0: unknown type)."""

    name: str
    shape: tuple[int, ...]
    type_name: str
    n_elements: int
    n_bytes: int
    offset: int


@dataclass(frozen=True)
class GGUFHeader:
    """A GGUF file's metadata and tensor table. ``fields`` holds scalars, strings and arrays of at most
    :data:`MAX_KEPT_ARRAY` items; longer arrays are absent."""

    path: str
    file_bytes: int
    version: int
    fields: Mapping[str, Any]
    tensors: tuple[GGUFTensor, ...]

    def value(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)

    def integer(self, key: str) -> int | None:
        """An integer field; per-layer arrays (some architectures vary heads by layer) count at their largest,
        so a KV cache sized from them is never undercounted."""
        value = self.fields.get(key)
        if isinstance(value, (list, tuple)):
            numbers = [v for v in value if isinstance(v, (int, float))]
            return int(max(numbers)) if numbers else None
        return int(value) if isinstance(value, (int, float)) else None

    def arch_int(self, key: str) -> int | None:
        """``<architecture>.<key>`` as an integer: ``arch_int("block_count")``."""
        return self.integer(f"{self.architecture}.{key}")

    @property
    def architecture(self) -> str:
        return str(self.fields.get("general.architecture") or "")

    @property
    def name(self) -> str:
        return str(self.fields.get("general.name") or "")

    @property
    def parameters(self) -> int:
        """``general.parameter_count`` when the converter wrote it, else the tensors' element count."""
        return self.integer("general.parameter_count") or sum(t.n_elements for t in self.tensors)

    @property
    def quantization(self) -> str:
        """The file type's llama.cpp name (``Q4_K_M``, ``F32``); when the header has none, or says GUESSED, the
        type holding most of the matrices' bytes (``Q4_K``)."""
        import gguf

        quant, file_type = "", self.integer("general.file_type")
        if file_type is not None:
            try:
                quant = gguf.LlamaFileType(file_type).name.removeprefix("MOSTLY_").removeprefix("ALL_")
            except ValueError:
                quant = ""
        if quant and quant != "GUESSED":
            return quant
        by_type: dict[str, int] = {}
        for t in self.tensors:
            if len(t.shape) >= 2:
                by_type[t.type_name] = by_type.get(t.type_name, 0) + t.n_bytes
        return max(by_type, key=by_type.__getitem__) if by_type else "unknown"

    def metadata(self) -> dict[str, Any]:
        """What ``models list/show`` display and the registry's manifests keep (plain JSON types)."""
        return {
            "architecture": self.architecture,
            "name": self.name,
            "parameters": self.parameters,
            "quantization": self.quantization,
            "context_length": self.arch_int("context_length"),
            "layers": self.arch_int("block_count"),
            "embedding_length": self.arch_int("embedding_length"),
            "heads": self.arch_int("attention.head_count"),
            "heads_kv": self.arch_int("attention.head_count_kv"),
            "chat_template": str(self.fields.get("tokenizer.chat_template") or ""),
            "license": str(self.fields.get("general.license") or ""),
        }


class _Malformed(Exception):
    """The bytes are not a GGUF header; the message says where they stop making sense."""


class _Cursor:
    """Reads GGUF values from a buffer in the file's byte order, refusing to read past its end."""

    def __init__(self, buf: mmap.mmap, order: str) -> None:
        self.buf, self.order, self.pos = buf, order, 0

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Malformed(
                f"it ends at byte {len(self.buf)}, inside its header (which goes on past byte {self.pos + n}): "
                "truncated, or still downloading"
            )

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(self.order + fmt)
        self.need(size)
        (value,) = struct.unpack_from(self.order + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self, keep: bool = True) -> str:
        n = int(self.take("Q"))
        self.need(n)
        start, self.pos = self.pos, self.pos + n
        return bytes(self.buf[start : self.pos]).decode("utf-8", errors="replace") if keep else ""

    def value(self, kind: int, keep: bool = True) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string(keep)
        if kind != _ARRAY:
            raise _Malformed(f"unknown value type {kind} at byte {self.pos}")
        item, count = int(self.take("I")), int(self.take("Q"))
        keep = keep and count <= MAX_KEPT_ARRAY
        if item in _SCALARS:
            size = struct.calcsize(self.order + _SCALARS[item]) * count
            self.need(size)
            values = (
                list(struct.unpack_from(f"{self.order}{count}{_SCALARS[item]}", self.buf, self.pos)) if keep else []
            )
            self.pos += size
            return values if keep else None
        values = [self.value(item, keep) for _ in range(count)]  # strings (or nested arrays): walked one by one
        return values if keep else None


def _tensor(cursor: _Cursor) -> GGUFTensor:
    import gguf

    name = cursor.string()
    n_dims = int(cursor.take("I"))
    if n_dims > MAX_DIMS:
        raise _Malformed(f"tensor {name!r} claims {n_dims} dimensions")
    shape = tuple(int(cursor.take("Q")) for _ in range(n_dims))
    kind, offset = int(cursor.take("I")), int(cursor.take("Q"))
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    try:
        quant = gguf.GGMLQuantizationType(kind)
        block, type_size = gguf.GGML_QUANT_SIZES[quant]
        return GGUFTensor(name, shape, quant.name, n_elements, n_elements // block * type_size, offset)
    except (ValueError, KeyError):  # a type newer than the installed gguf package: size unknown
        return GGUFTensor(name, shape, f"type {kind}", n_elements, 0, offset)


def _parse(buf: mmap.mmap, path: str, size: int) -> GGUFHeader:
    if bytes(buf[:4]) != GGUF_MAGIC:
        raise _Malformed("it does not start with the GGUF magic bytes")
    order = "<"
    version = struct.unpack_from("<I", buf, 4)[0] if len(buf) >= 8 else 0
    if version & 0xFFFF == 0 and version:  # written big-endian (s390x conversions)
        order, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in SUPPORTED_VERSIONS:
        raise _Malformed(f"GGUF version {version} is not one of {SUPPORTED_VERSIONS}")
    cursor = _Cursor(buf, order)
    cursor.pos = 8
    n_tensors, n_fields = int(cursor.take("Q")), int(cursor.take("Q"))
    fields: dict[str, Any] = {}
    for _ in range(n_fields):
        key = cursor.string()
        value = cursor.value(int(cursor.take("I")))
        if value is not None:
            fields[key] = value
    tensors = tuple(_tensor(cursor) for _ in range(n_tensors))
    alignment = fields.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Malformed(f"general.alignment {alignment!r} is not a power of two")
    data_start = -(-cursor.pos // alignment) * alignment
    data_end = max((data_start + t.offset + t.n_bytes for t in tensors), default=data_start)
    if data_end > size:
        raise _Malformed(f"its tensors need {data_end} bytes but the file has {size}: truncated, or still downloading")
    return GGUFHeader(path, size, int(version), MappingProxyType(fields), tensors)


@functools.lru_cache(maxsize=32)
def _read_cached(path: str, size: int, mtime_ns: int) -> GGUFHeader:
    """One parse per file version: the registry, ``models fit`` and the runtime's plan may ask in turn."""
    try:
        with open(path, "rb") as fh:
            if size == 0:
                raise _Malformed("it is empty")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path, size)
    except _Malformed as exc:
        raise LoadError(path, f"not a readable GGUF file ({exc})") from None
    except (OSError, ValueError) as exc:
        raise LoadError(path, f"not a readable GGUF file ({exc})") from exc


def read_gguf_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """The header of the GGUF at ``path`` (no weights read). ModelNotFoundError if there is no such file,
    LoadError if it is not a complete GGUF."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelNotFoundError(f"No GGUF file at {file}")
    stat = file.stat()
    return _read_cached(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


def gguf_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What ``models list/show`` display, read from the GGUF header only (see :meth:`GGUFHeader.metadata`)."""
    return read_gguf_header(path).metadata()
