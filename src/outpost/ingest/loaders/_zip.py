"""Bounds on a zip container (DOCX, and any later Office or EPUB loader) before a parser opens it.

A zip is a small file that can stand for a huge one: a 200 KB member of zeros inflates to 200 MB
(a "zip bomb"), a central directory can list millions of members, and its declared sizes are
whatever the author wrote. Office XML parts can also carry a DTD whose entities expand
exponentially ("billion laughs") or name external files. So, before python-docx sees the bytes:

- the central directory's size (from the end record, before ``zipfile`` parses it) and the
  member count are capped, and zip64 is refused: no document this reads needs it;
- declared sizes are checked (total, and the ratio to the compressed size of every member over
  1 MB: XML compresses 10-30×, a bomb of zeros about 1000×);
- every member is then inflated in 1 MB pieces and counted, so actual sizes are checked too
  (``zipfile`` also stops at the declared size and checks the CRC), and XML parts are refused if
  they contain a DTD (``<!DOCTYPE``, ``<!ENTITY``, in UTF-8 or UTF-16): OOXML never has one.

python-docx parses with ``resolve_entities=False`` and lxml's default ``huge_tree=False``, so an
entity would not expand anyway; refusing the DTD makes that independent of a library default.
Inflating twice (here, then in python-docx) costs little next to parsing the XML.
"""

from __future__ import annotations

import io
import struct
import zipfile

from outpost.ingest.loaders import fail

__all__ = ["MAX_MEMBERS", "MAX_RATIO", "MAX_UNCOMPRESSED", "check_zip"]

MB = 1024 * 1024
MAX_MEMBERS = 5000
MAX_CENTRAL_DIRECTORY = 4 * MB
MAX_UNCOMPRESSED = 512 * MB
MAX_RATIO = 200
RATIO_APPLIES_ABOVE = 1 * MB

_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22
_EOCD_SEARCH = 65535 + _EOCD_SIZE  # the end record is followed by at most a 64 KB comment
_ZIP64_MARK = 0xFFFF
_XML_SUFFIXES = (".xml", ".rels")
_DTD_MARKERS = tuple(
    marker.encode(encoding) for marker in ("<!DOCTYPE", "<!ENTITY") for encoding in ("utf-8", "utf-16-le", "utf-16-be")
)
_OVERLAP = max(len(m) for m in _DTD_MARKERS)
_PIECE = 1 * MB


def _check_end_record(data: bytes, name: str) -> None:
    """Member count and central-directory size from the end record, before ``zipfile`` allocates."""
    at = data.rfind(_EOCD, max(0, len(data) - _EOCD_SEARCH))
    if at < 0 or at + _EOCD_SIZE > len(data):
        return  # not a zip: zipfile says so in its own words
    entries, cd_size = struct.unpack("<HI", data[at + 10 : at + 16])  # total entries, directory size
    if entries == _ZIP64_MARK or cd_size == 0xFFFFFFFF:
        raise fail(name, "zip64 archive: far larger than any document this reads; skipped")
    if entries > MAX_MEMBERS or cd_size > MAX_CENTRAL_DIRECTORY:
        raise fail(name, f"zip archive lists {entries} members (limit {MAX_MEMBERS}); skipped")


def _check_declared(infos: list[zipfile.ZipInfo], name: str) -> None:
    if len(infos) > MAX_MEMBERS:
        raise fail(name, f"zip archive lists {len(infos)} members (limit {MAX_MEMBERS}); skipped")
    total = sum(info.file_size for info in infos)
    if total > MAX_UNCOMPRESSED:
        raise fail(name, f"zip members declare {total / MB:.0f} MB uncompressed (limit {MAX_UNCOMPRESSED // MB} MB)")
    for info in infos:
        if info.file_size > RATIO_APPLIES_ABOVE and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            ratio = info.file_size / max(info.compress_size, 1)
            raise fail(
                name, f"zip member {info.filename!r} compresses {ratio:.0f}:1 (limit {MAX_RATIO}:1): a zip bomb?"
            )


def _inflate_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> int:
    """Inflate one member in pieces; its actual size, checked against its declaration."""
    is_xml = info.filename.lower().endswith(_XML_SUFFIXES)
    size, tail = 0, b""
    with archive.open(info) as member:
        while piece := member.read(_PIECE):
            size += len(piece)
            if size > info.file_size:
                raise fail(name, f"zip member {info.filename!r} is larger than it declares; skipped")
            window = tail + piece
            if is_xml and any(marker in window for marker in _DTD_MARKERS):
                raise fail(name, f"XML part {info.filename!r} declares a DTD (entity expansion is refused)")
            tail = window[-_OVERLAP:]
    return size


def check_zip(data: bytes, name: str) -> None:
    """Raise ``LoadError`` unless the zip in ``data`` stays within every bound above."""
    _check_end_record(data, name)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        _check_declared(infos, name)
        total = 0
        for info in infos:
            total += _inflate_member(archive, info, name)
            if total > MAX_UNCOMPRESSED:
                raise fail(name, f"zip members inflate past {MAX_UNCOMPRESSED // MB} MB; skipped")
