"""A folder an attacker filled: the hostile-folder generator behind ``test_hostile_folder.py``.

``build(root, outside)`` writes well over 500 entries under ``root`` and returns what an ingest of
it must do with each one:

- ``good``: ordinary documents (Markdown, text, CSV, JSON, HTML, DOCX, PDF, and a few awkward but
  legitimate ones: a huge single line, bad UTF-8, HTML carrying an XML bomb that HTML ignores),
  each holding a unique marker word that a search must find afterwards;
- ``bad``: entries that must each get exactly one failure line whose reason contains the given
  words: links out of the root (to files, folders, ``/dev/zero``, ``/dev/urandom``), link loops,
  FIFOs, a UNIX socket, zip bombs and DTDs inside ``.docx``, binary data under text names, empty
  files, deeply nested JSON, CSV with enormous fields, oversize files, unsupported types;
- ``damaged``: truncated and byte-flipped PDFs, which pypdf may partly recover: each is either
  ingested or reported once, and never hangs or takes the ingest down;
- ``quiet``: links that stay inside the root (their targets are ingested under their own keys)
  and hidden files: neither ingested nor reported.

``outside`` holds the files the links point at; its marker word (``SECRET``) must never become
searchable. Everything is generated here from a seed: no fixture files, nothing downloaded.
"""

from __future__ import annotations

import io
import os
import random
import socket
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import docx
from fpdf import FPDF

SECRET = "exfiltratedsecret"
OVERSIZE_MB = 2  # the ingest under test runs with OUTPOST_MAX_FILE_MB set to this


@dataclass
class HostileFolder:
    root: Path
    good: dict[str, str] = field(default_factory=dict)  # key -> marker word in its text
    bad: dict[str, tuple[str, ...]] = field(default_factory=dict)  # key -> words its failure reason holds
    damaged: set[str] = field(default_factory=set)
    quiet: set[str] = field(default_factory=set)

    @property
    def entries(self) -> int:
        return len(self.good) + len(self.bad) + len(self.damaged) + len(self.quiet)


class _Writer:
    """Writes entries under the root and files them in the expectation as it goes."""

    def __init__(self, root: Path, outside: Path, seed: int) -> None:
        self.folder = HostileFolder(root)
        self.outside = outside
        self.rng = random.Random(seed)
        self.count = 0

    def marker(self) -> str:
        self.count += 1
        return f"goodmarker{self.count:04d}"

    def path(self, key: str) -> Path:
        path = self.folder.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def good(self, key: str, data: bytes | str, marker: str) -> None:
        self._write(key, data)
        self.folder.good[key] = marker

    def bad(self, key: str, data: bytes | str, *reason: str) -> None:
        self._write(key, data)
        self.folder.bad[key] = reason

    def _write(self, key: str, data: bytes | str) -> None:
        path = self.path(key)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)

    def link(self, key: str, target: str | Path, *reason: str) -> None:
        """A symbolic link; no reason means it stays inside the root and is skipped quietly."""
        os.symlink(target, self.path(key))
        if reason:
            self.folder.bad[key] = reason
        else:
            self.folder.quiet.add(key)


# -- good documents -------------------------------------------------------------------------


def _sentence(marker: str, topic: str) -> str:
    return f"The {topic} note {marker} says the river station opens at dawn and closes at dusk."


def _docx_bytes(paragraphs: list[str], heading: str = "Field guide") -> bytes:
    document = docx.Document()
    document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def _pdf_bytes(text: str, pages: int = 2) -> bytes:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for page in range(pages):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"{text} Page {page + 1}.")
    return bytes(pdf.output())


def _good_documents(w: _Writer) -> None:
    for i in range(50):
        m = w.marker()
        w.good(f"good/md/note-{i:02d}.md", f"---\ntitle: Note {i}\n---\n# Note {i}\n\n{_sentence(m, 'markdown')}\n", m)
    for i in range(50):
        m = w.marker()
        w.good(f"good/txt/log-{i:02d}.txt", f"Log {i}\n\n{_sentence(m, 'text')}\n", m)
    for i in range(12):
        m = w.marker()
        w.good(f"good/csv/table-{i:02d}.csv", f"id,remark\n{i},{_sentence(m, 'table')}\n", m)
    for i in range(12):
        m = w.marker()
        w.good(f"good/json/record-{i:02d}.json", f'{{"title": "Record {i}", "body": "{_sentence(m, "json")}"}}', m)
    for i in range(8):
        m = w.marker()
        w.good(
            f"good/html/page-{i:02d}.html", f"<html><body><main><p>{_sentence(m, 'web')}</p></main></body></html>", m
        )
    for i in range(4):
        m = w.marker()
        w.good(f"good/docx/guide-{i:02d}.docx", _docx_bytes([_sentence(m, "word")]), m)
    for i in range(4):
        m = w.marker()
        w.good(f"good/pdf/report-{i:02d}.pdf", _pdf_bytes(_sentence(m, "pdf")), m)
    _awkward_but_good(w)
    _damaged_pdfs(w, [_pdf_bytes(f"Damaged copy {i} of a report.") for i in range(4)])


def _awkward_but_good(w: _Writer) -> None:
    """Legitimate files that used to be slow or are easy to get wrong: each must still be ingested."""
    m = w.marker()
    w.good("awkward/huge-line.txt", f"{m} " + "x" * 1_000_000 + "\n", m)  # one 1 MB line, one word
    m = w.marker()
    w.good("awkward/huge-line.md", f"# Wide\n\n{_sentence(m, 'wide')} " + "word " * 5_000 + "\n", m)
    m = w.marker()
    bad_utf8 = f"{_sentence(m, 'latin')}\n".encode() + b"caf\xe9 na\xefve \xff\xfe r\xc3\x28sum\xe9\n"
    w.good("awkward/bad-utf8.txt", bad_utf8, m)
    # inputs that made the Markdown loader's regexes quadratic (seconds each before the fix)
    m = w.marker()
    w.good("awkward/front-matter.md", "---\ntitle: x" + " " * 100_000 + "y\n---\n\n" + _sentence(m, "front"), m)
    m = w.marker()
    w.good("awkward/comments.md", f"{_sentence(m, 'comment')}\n\n<!--" + "<!--" * 25_000 + "\n", m)
    m = w.marker()
    w.good("awkward/tags.md", f"{_sentence(m, 'tag')}\n\n<div>" + "<" * 100_000 + "\n", m)
    # an XML bomb and an external entity in HTML: HTML has no DTDs, so both stay inert text
    bomb = _billion_laughs("html")
    for i in range(3):
        m = w.marker()
        w.good(f"awkward/laughs-{i}.html", bomb.replace("</html>", f"<p>{_sentence(m, 'laughs')}</p></html>"), m)
    xxe = f'<!DOCTYPE html [<!ENTITY xxe SYSTEM "file://{w.outside / "secret-0.txt"}">]><html><body>&xxe;'
    for i in range(3):
        m = w.marker()
        w.good(f"awkward/xxe-{i}.htm", xxe + f"<p>{_sentence(m, 'entity')}</p></body></html>", m)


def _damaged_pdfs(w: _Writer, pdfs: list[bytes]) -> None:
    for i in range(30):
        source = pdfs[i % len(pdfs)]
        cut = w.rng.randint(len(source) // 10, len(source) - 10)
        w._write(f"damaged/truncated-{i:02d}.pdf", source[:cut])
        w.folder.damaged.add(f"damaged/truncated-{i:02d}.pdf")
    for i in range(30):
        flipped = bytearray(pdfs[i % len(pdfs)])
        for _ in range(1 + i):
            flipped[w.rng.randrange(len(flipped))] ^= 1 << w.rng.randrange(8)
        w._write(f"damaged/flipped-{i:02d}.pdf", bytes(flipped))
        w.folder.damaged.add(f"damaged/flipped-{i:02d}.pdf")


# -- links, special files -------------------------------------------------------------------


def _links(w: _Writer) -> None:
    w.outside.mkdir(parents=True, exist_ok=True)
    (w.outside / "folder").mkdir(exist_ok=True)
    for i in range(20):
        (w.outside / f"secret-{i}.txt").write_text(f"The vault code is {SECRET}.\n")
        w.link(f"links/out-file-{i:02d}.txt", w.outside / f"secret-{i}.txt", "outside the ingest root")
    (w.outside / "folder" / "inner.md").write_text(f"# Inner\n\n{SECRET}\n")
    for i in range(10):
        w.link(f"links/out-dir-{i:02d}", w.outside / "folder", "folder outside the ingest root")
        w.link(f"links/relative-up-{i:02d}.md", f"../../{w.outside.name}/secret-{i}.txt", "outside the ingest root")
    for i, device in enumerate(["/dev/zero", "/dev/urandom"] * 3):
        w.link(f"links/device-{i}.txt", device, "outside the ingest root")
    for i in range(10):
        w.link(f"loops/pair-{i:02d}-a.md", f"pair-{i:02d}-b.md", "link loop")
        w.link(f"loops/pair-{i:02d}-b.md", f"pair-{i:02d}-a.md", "link loop")
        w.link(f"loops/self-{i:02d}.txt", f"self-{i:02d}.txt", "link loop")
        w.link(f"loops/dangling-{i:02d}.txt", "does-not-exist.txt", "broken symbolic link")
    w.link("loops/sub/up", "..")  # a folder loop inside the root: skipped quietly, must not hang the walk
    w.link("loops/sub/root", "../..")
    for i in range(5):
        w.link(f"links/inside-{i}.md", "../good/md/note-00.md")


def _special_files(w: _Writer) -> None:
    for i in range(40):
        suffix = (".txt", ".md", ".pdf", ".docx")[i % 4]
        os.mkfifo(w.path(f"special/fifo-{i:02d}{suffix}"))
        w.folder.bad[f"special/fifo-{i:02d}{suffix}"] = ("FIFO", "not a regular file")
    for i in range(2):
        _unix_socket(w.path(f"special/socket-{i}.txt"))
        w.folder.bad[f"special/socket-{i}.txt"] = ("socket", "not a regular file")


def _unix_socket(path: Path) -> None:
    """A socket file at ``path``; bound by its short relative name (AF_UNIX paths stop at ~100 bytes)."""
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path.name)
    finally:
        os.chdir(cwd)


# -- zip and XML bombs ----------------------------------------------------------------------


def _zip(members: dict[str, bytes], level: int = 9) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _docx_members() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(_docx_bytes(["A perfectly ordinary paragraph."]))) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _declared_size(data: bytes, size: int) -> bytes:
    """Rewrite every member's declared uncompressed size (local and central headers) to ``size``."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = out.find(signature)
        while at >= 0:
            out[at + offset : at + offset + 4] = struct.pack("<I", size)
            at = out.find(signature, at + 4)
    return bytes(out)


def _billion_laughs(root: str) -> str:
    """The classic: nine levels of ten references each, 10^9 "lol"s if anything expanded it."""
    entities = ['<!ENTITY lol "lol">', '<!ENTITY lol1 "' + "&lol;" * 10 + '">']
    entities += [f'<!ENTITY lol{n} "' + f"&lol{n - 1};" * 10 + '">' for n in range(2, 10)]
    return f'<?xml version="1.0"?><!DOCTYPE {root} [{"".join(entities)}]><{root}>&lol9;</{root}>'


def _zip_bombs(w: _Writer) -> None:
    members = _docx_members()
    zeros = _zip({**members, "word/document.xml": b"\0" * (64 * 1024 * 1024)})  # ~64 KB inflating to 64 MB
    for i in range(8):
        w.bad(f"bombs/zeros-{i}.docx", zeros, "zip bomb")
    huge = _declared_size(_zip(members), 3_000_000_000)
    for i in range(6):
        w.bad(f"bombs/declared-{i}.docx", huge, "uncompressed")
    many = _zip({**members, **{f"word/media/m{n}.bin": b"" for n in range(6000)}}, level=1)
    for i in range(6):
        w.bad(f"bombs/members-{i}.docx", many, "members")
    lying = bytearray(_zip({**members, "word/document.xml": members["word/document.xml"] * 50}))
    lying = _declared_size(bytes(lying), 100)  # declares 100 bytes, inflates to more: zipfile stops, CRC fails
    for i in range(4):
        w.bad(f"bombs/lying-{i}.docx", lying, "docx")
    laughs = _zip({**members, "word/document.xml": _billion_laughs("w:document").encode()})
    xxe_xml = f'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY x SYSTEM "file://{w.outside}/secret-0.txt">]><w>&x;</w>'
    xxe = _zip({**members, "word/document.xml": xxe_xml.encode()})
    utf16 = _zip({**members, "word/styles.xml": _billion_laughs("w:styles").encode("utf-16")})
    for i in range(4):
        w.bad(f"bombs/laughs-{i}.docx", laughs, "DTD")
        w.bad(f"bombs/xxe-{i}.docx", xxe, "DTD")
        w.bad(f"bombs/laughs-utf16-{i}.docx", utf16, "DTD")
    for i in range(4):
        w.bad(f"bombs/laughs-{i}.xml", _billion_laughs("doc"), "unsupported file type")
    for i in range(4):
        w.bad(f"bombs/not-a-zip-{i}.docx", b"PK\x03\x04" + w.rng.randbytes(2000), "docx")


# -- malformed text formats -----------------------------------------------------------------


def _malformed(w: _Writer) -> None:
    for i in range(100):
        suffix = (".txt", ".md", ".csv", ".json")[i % 4]
        w.bad(f"binary/blob-{i:02d}{suffix}", w.rng.randbytes(4096 + i), "binary file, not text")
    empty_reasons = dict.fromkeys([".txt", ".md", ".csv", ".tsv", ".jsonl", ".html", ".htm"], "no text")
    empty_reasons.update({".json": "invalid JSON", ".pdf": "pdf", ".docx": "docx"})
    for i, (suffix, reason) in enumerate(empty_reasons.items()):
        w.bad(f"empty/empty-{i}{suffix}", b"", reason)
    for i in range(6):
        w.bad(f"nested/deep-{i}.json", "[" * 200_000 + "]" * 200_000, "nested too deeply")
    for i in range(4):
        w.bad(f"nested/deep-lines-{i}.jsonl", '{"a":' * 100_000 + "1" + "}" * 100_000 + "\n", "nested too deeply")
    for i in range(6):
        w.bad(f"fields/enormous-{i}.csv", "a,b\n1," + "y" * 300_000 + "\n", "field larger than field limit")
    for i in range(6):
        w.bad(f"fields/bad-{i}.json", "{" + '"k": 1,' * 1000, "invalid JSON")
    for i in range(4):
        with w.path(f"oversize/big-{i}.txt").open("wb") as fh:
            fh.truncate((OVERSIZE_MB + 1) * 1024 * 1024)  # sparse: costs no disk
        w.folder.bad[f"oversize/big-{i}.txt"] = ("larger than the", "max_file_mb")
    for i in range(6):
        w.bad(f"unsupported/tool-{i}.exe", b"MZ" + w.rng.randbytes(100), "unsupported file type")
    for i in range(5):
        w._write(f"hidden/.secret-{i}.md", f"# Hidden\n\n{SECRET}\n")
        w.folder.quiet.add(f"hidden/.secret-{i}.md")
    w._write(".git/config", f"[core]\n{SECRET}\n")
    w.folder.quiet.add(".git/config")


def build(root: Path, outside: Path, seed: int = 10) -> HostileFolder:
    """Write the hostile folder under ``root`` (links point into ``outside``); see the module doc."""
    root.mkdir(parents=True, exist_ok=True)
    w = _Writer(root, outside, seed)
    _links(w)
    _good_documents(w)
    _special_files(w)
    _zip_bombs(w)
    _malformed(w)
    return w.folder
