"""JSON and JSON Lines: one block per record, rendered as ``key: value`` lines.

Exports, API dumps and datasets are mostly lists of objects; each object is one record, so it
becomes one block, with nested keys flattened (``author.name: Ada``) so the text reads on its
own. A ``title`` or ``name`` field becomes the block's heading.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from outpost.ingest.loaders import fail
from outpost.ingest.loaders._common import decode_text
from outpost.records import Block

__all__ = ["extract"]

_HEADING_FIELDS = ("title", "name")


def _parse_json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise fail(name, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc


def _parse_jsonl(text: str, name: str) -> list[Any]:
    """One value per non-empty line; a bad line fails the file, naming the line."""
    values: list[Any] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise fail(name, f"invalid JSON on line {number} (column {exc.colno}): {exc.msg}") from exc
    return values


def _scalar(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _lines(value: Any, prefix: str) -> Iterator[str]:
    """Flatten to ``dotted.key: value`` lines; lists of scalars join with ", "; empties drop."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _lines(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        for index, item in enumerate(value):
            yield from _lines(item, f"{prefix}.{index}" if prefix else str(index))
    elif isinstance(value, list):
        joined = ", ".join(_scalar(v) for v in value if not _is_empty(v))
        if joined:
            yield f"{prefix}: {joined}" if prefix else joined
    elif not _is_empty(value):
        yield f"{prefix}: {_scalar(value)}" if prefix else _scalar(value)


def _block(value: Any, heading: str = "", prefix: str = "") -> Block:
    """A record's block; its own ``title``/``name`` string wins over the given heading."""
    if isinstance(value, dict):
        own = next((value[f] for f in _HEADING_FIELDS if isinstance(value.get(f), str)), "")
        heading = own.strip() or heading
    return Block(text="\n".join(_lines(value, prefix)), headings=(heading,) if heading else ())


def _is_records(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _dict_blocks(obj: dict[str, Any]) -> list[Block]:
    """Flatten the record lists a dict holds (``{"items": [...]}``); its other keys make one
    block of metadata. A dict without record lists gets one block per top-level key."""
    record_keys = [k for k, v in obj.items() if _is_records(v)]
    if not record_keys:
        return [_block(v, str(k), prefix=str(k)) for k, v in obj.items()]
    rest = {k: v for k, v in obj.items() if k not in record_keys}
    blocks = [_block(rest)] if rest else []
    return blocks + [_block(item, str(key)) for key in record_keys for item in obj[key]]


def _blocks(value: Any) -> list[Block]:
    if isinstance(value, list):
        return [_block(item) for item in value]
    if isinstance(value, dict):
        return _dict_blocks(value)
    return [_block(value)]


def extract(data: bytes, name: str) -> tuple[str, list[Block]]:
    """``.jsonl`` is read line by line, anything else as one JSON document; no title."""
    text = decode_text(data, name)
    if PurePosixPath(name).suffix.lower() == ".jsonl":
        return "", _blocks(_parse_jsonl(text, name))
    return "", _blocks(_parse_json(text, name))
