"""Loaders end to end: real files of every supported kind, made here, through the registry.

No mocks: PDFs come from fpdf2 and DOCX files from python-docx, so each test exercises the same
parser path a user's file would. Broken files must fail with a ``LoadError`` naming the file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from docx import Document as WordDocument
from fpdf import FPDF

from outpost.errors import LoadError, UnsupportedFileError
from outpost.ingest.loaders import load_bytes, load_file
from outpost.records import Document


def texts(doc: Document) -> list[str]:
    return [block.text for block in doc.blocks]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# --- PDF ---------------------------------------------------------------------------------------


def make_pdf(pages: list[str], title: str = "") -> bytes:
    pdf = FPDF()
    if title:
        pdf.set_title(title)
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        pdf.multi_cell(0, 6, text)
    return bytes(pdf.output())


def test_pdf_pages_title_and_text(tmp_path: Path) -> None:
    data = make_pdf(
        ["Boil water for one minute before drinking.", "The radio    runs on two batteries."],
        title="Field Manual",
    )
    doc = load_file(write(tmp_path, "manual.pdf", data), "docs/manual.pdf")
    assert (doc.key, doc.kind, doc.title) == ("docs/manual.pdf", "pdf", "Field Manual")
    assert [(b.page, b.text) for b in doc.blocks] == [
        (1, "Boil water for one minute before drinking."),
        (2, "The radio runs on two batteries."),
    ]
    assert doc.size == len(data) and len(doc.sha256) == 64


def test_pdf_rejoins_hyphenated_line_ends_and_defaults_title_to_stem() -> None:
    doc = load_bytes(make_pdf(["Use purifi-\ncation tablets.\nThen wait."]), "kit.pdf")
    assert doc.title == "kit"
    assert texts(doc) == ["Use purification tablets. Then wait."]


def test_pdf_encrypted_with_user_password_fails() -> None:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.cell(0, 10, "classified")
    with pytest.raises(LoadError, match=r"^locked\.pdf: encrypted PDF"):
        load_bytes(bytes(pdf.output()), "locked.pdf")


def test_pdf_encrypted_with_empty_user_password_opens() -> None:
    pdf = FPDF()
    pdf.set_encryption(owner_password="owner")
    pdf.set_font("Helvetica", size=12)
    pdf.add_page()
    pdf.cell(0, 10, "no printing allowed")
    assert texts(load_bytes(bytes(pdf.output()), "open.pdf")) == ["no printing allowed"]


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_pdf_truncated_fails(cut: float) -> None:
    data = make_pdf(["some text"] * 3)
    with pytest.raises(LoadError, match=r"^broken\.pdf: "):
        load_bytes(data[: int(len(data) * cut)], "broken.pdf")


def test_pdf_random_bytes_fail() -> None:
    noise = random.Random(7).randbytes(4096)
    with pytest.raises(LoadError, match=r"^noise\.pdf: cannot read pdf"):
        load_bytes(noise, "noise.pdf")


# --- DOCX --------------------------------------------------------------------------------------


def make_docx(path: Path, *, core_title: str = "") -> Path:
    word = WordDocument()
    word.core_properties.title = core_title
    word.add_heading("Survival Guide", level=0)
    word.add_paragraph("Read this first.")
    word.add_heading("Water", level=1)
    word.add_paragraph("Boil it.")
    word.add_heading("Filters", level=2)
    word.add_paragraph("Ceramic filters last longest.")
    table = word.add_table(rows=2, cols=3)
    for row, values in zip(table.rows, [("Item", "Qty", "Note"), ("Tablets", "50", "")]):
        for cell, value in zip(row.cells, values):
            cell.text = value
    word.add_heading("Fire", level=1)
    word.add_paragraph("Keep matches dry.")
    word.save(str(path))
    return path


def test_docx_headings_paragraphs_and_table(tmp_path: Path) -> None:
    doc = load_file(make_docx(tmp_path / "guide.docx"), "guide.docx")
    assert (doc.kind, doc.title) == ("docx", "Survival Guide")
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("Read this first.", ("Survival Guide",)),
        ("Boil it.", ("Survival Guide", "Water")),
        ("Ceramic filters last longest.", ("Survival Guide", "Water", "Filters")),
        ("Item | Qty | Note", ("Survival Guide", "Water", "Filters")),
        ("Tablets | 50 | ", ("Survival Guide", "Water", "Filters")),
        ("Keep matches dry.", ("Survival Guide", "Fire")),
    ]


def test_docx_core_properties_title_wins(tmp_path: Path) -> None:
    doc = load_file(make_docx(tmp_path / "g.docx", core_title="Official Title"), "g.docx")
    assert doc.title == "Official Title"


def test_docx_not_a_zip_fails() -> None:
    with pytest.raises(LoadError, match=r"^old\.docx: not a \.docx file"):
        load_bytes(b"\xd0\xcf\x11\xe0 legacy word binary", "old.docx")


def test_docx_zip_without_document_fails(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "empty.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    with pytest.raises(LoadError, match=r"^empty\.docx: cannot read docx"):
        load_file(path, "empty.docx")


# --- HTML --------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="windows-1252"><title>Water Safety</title>
<script>var tracking = "SCRIPT-TEXT";</script><style>.x { color: red }</style></head>
<body class="menu-page">
<header><a href="/">SITE-HEADER</a></header>
<nav><ul><li>NAV-LINK</li></ul></nav>
<div id="cookie-banner">COOKIE-NOTICE</div>
<div class="sidebarWidget">SIDEBAR-TEXT</div>
<div role="navigation">ROLE-NAV</div>
<main>
  <article>
    <header><h1>Boiling Water</h1></header>
    <p>Bring water to a rolling boil.<br>Then cool it.</p>
    <div class="navigation-free">NAV-FREE</div>
    <div class="manual">Loose text in a div, <em>still</em> kept.</div>
    <h2>Altitude</h2>
    <p>Above 2000 m boil   for three minutes.</p>
    <ul><li>Use a lid</li><li>Save fuel <ul><li>nested tip</li></ul></li></ul>
    <table><tr><th>Height</th><th>Minutes</th></tr><tr><td>0 m</td><td>1</td></tr></table>
    <pre>boil(water)
  wait(60)</pre>
    <div class="share-buttons">SHARE-TEXT</div>
    <footer>Article footnote</footer>
  </article>
</main>
<aside>ASIDE-TEXT</aside>
<footer>SITE-FOOTER</footer>
<noscript>NOSCRIPT-TEXT</noscript>
<!-- COMMENT-TEXT -->
</body></html>
"""


def test_html_keeps_article_and_drops_boilerplate() -> None:
    doc = load_bytes(PAGE.encode("cp1252"), "site/water.html")
    assert (doc.kind, doc.title) == ("html", "Water Safety")
    joined = "\n".join(texts(doc))
    for noise in ("SCRIPT", "SITE-", "NAV-", "COOKIE", "SIDEBAR", "ROLE-NAV", "SHARE", "ASIDE",
                  "NOSCRIPT", "COMMENT", "color"):  # fmt: skip
        assert noise not in joined
    h1, h2 = ("Boiling Water",), ("Boiling Water", "Altitude")
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("Bring water to a rolling boil. Then cool it.", h1),
        ("Loose text in a div, still kept.", h1),
        ("Above 2000 m boil for three minutes.", h2),
        ("Use a lid", h2),
        ("Save fuel", h2),
        ("nested tip", h2),
        ("Height | Minutes", h2),
        ("0 m | 1", h2),
        ("boil(water)\n  wait(60)", h2),
        ("Article footnote", h2),
    ]


def test_html_meta_charset_and_h1_title() -> None:
    page = '<html><head><meta charset="iso-8859-1"></head><body><h1>Café</h1><p>Crème brûlée</p>'
    doc = load_bytes(page.encode("latin-1"), "menu.htm")
    assert doc.title == "Café"
    assert [(b.text, b.headings) for b in doc.blocks] == [("Crème brûlée", ("Café",))]


def test_html_bad_utf8_is_replaced_not_fatal() -> None:
    doc = load_bytes(b"<p>caf\xe9 open</p>", "x.html")
    assert texts(doc) == ["caf\ufffd open"]


def test_html_only_boilerplate_has_no_text() -> None:
    with pytest.raises(LoadError, match=r"^nav\.html: no text found in html file"):
        load_bytes(b"<html><body><nav>Home | About</nav><script>x()</script></body></html>", "nav.html")


# --- Markdown ----------------------------------------------------------------------------------

MARKDOWN = """---
title: "Field Notes"
tags: [water, fire]
---
# Water

Boil **all** water, see [the guide](https://example.org/guide).

## Filters

- Ceramic `pore size` 0.2 um
- Carbon

```python
# not a heading
boil(water)
```

| Kind | Life |
| ---- | ---- |
| Ceramic | 1 year |

# Fire

Keep *matches* dry.
"""


def test_markdown_front_matter_headings_and_plain_text(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "notes.md", MARKDOWN), "notes.md")
    assert (doc.kind, doc.title) == ("markdown", "Field Notes")
    water, filters = ("Water",), ("Water", "Filters")
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("Boil all water, see the guide.", water),
        ("Ceramic pore size 0.2 um", filters),
        ("Carbon", filters),
        ("# not a heading\nboil(water)", filters),
        ("Kind | Life", filters),
        ("Ceramic | 1 year", filters),
        ("Keep matches dry.", ("Fire",)),
    ]
    assert all("tags:" not in t for t in texts(doc))


def test_markdown_title_from_first_h1_without_front_matter() -> None:
    doc = load_bytes(b"Intro line.\n\n# Main\n\ntext\n\n# Second\n", "readme.markdown")
    assert doc.title == "Main"
    assert [(b.text, b.headings) for b in doc.blocks] == [("Intro line.", ()), ("text", ("Main",))]


# --- Plain text --------------------------------------------------------------------------------


def test_text_paragraphs_and_bom(tmp_path: Path) -> None:
    data = "\ufeffFirst line\nsame paragraph\n\n  \nSecond paragraph\r\n".encode()
    doc = load_file(write(tmp_path, "notes.txt", data), "notes.txt")
    assert (doc.kind, doc.title) == ("text", "notes")
    assert texts(doc) == ["First line\nsame paragraph", "Second paragraph"]


def test_text_legacy_encodings() -> None:
    assert texts(load_bytes("naïve “quotes”".encode("cp1252"), "a.txt")) == ["naïve “quotes”"]
    assert texts(load_bytes("Grüße\n\nzwei".encode("utf-16"), "b.rst")) == ["Grüße", "zwei"]


def test_text_binary_fails() -> None:
    blob = b"\x7fELF\x02\x01\x01" + bytes(64) + bytes(range(256)) * 4
    with pytest.raises(LoadError, match=r"^bin/tool\.txt: binary file, not text"):
        load_bytes(blob, "bin/tool.txt")


def test_text_random_bytes_fail() -> None:
    with pytest.raises(LoadError, match=r"^noise\.txt: binary file"):
        load_bytes(random.Random(3).randbytes(4096), "noise.txt")


# --- CSV / TSV ---------------------------------------------------------------------------------


def test_csv_rows_as_named_values(tmp_path: Path) -> None:
    data = 'item,qty,note\nTablets,50,"keep dry, cool"\nRope,,\n\nMatches,3,waterproof,extra\n'
    doc = load_file(write(tmp_path, "stock.csv", data), "inv/stock.csv")
    assert doc.kind == "csv"
    assert texts(doc) == [
        "item: Tablets; qty: 50; note: keep dry, cool",
        "item: Rope",
        "item: Matches; qty: 3; note: waterproof; col4: extra",
    ]
    assert {b.headings for b in doc.blocks} == {("stock",)}


def test_csv_sniffs_semicolons() -> None:
    doc = load_bytes(b"name;city\nAda;London\nGrace;New York\n", "people.csv")
    assert texts(doc) == ["name: Ada; city: London", "name: Grace; city: New York"]


def test_tsv_uses_tabs() -> None:
    doc = load_bytes(b"word\tmeaning, roughly\nhola\thello, hi\n", "words.tsv")
    assert texts(doc) == ["word: hola; meaning, roughly: hello, hi"]


def test_csv_header_only_has_no_text() -> None:
    with pytest.raises(LoadError, match=r"^h\.csv: no text found in csv file"):
        load_bytes(b"a,b,c\n", "h.csv")


# --- JSON / JSONL ------------------------------------------------------------------------------


def test_json_list_of_objects() -> None:
    records = [
        {"title": "Tablets", "qty": 50, "tags": ["water", "safe"], "meta": {"by": "Ada"}},
        {"id": 2, "ok": True, "missing": None, "parts": [{"n": 1}]},
    ]
    doc = load_bytes(json.dumps(records).encode(), "stock.json")
    assert doc.kind == "json"
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("title: Tablets\nqty: 50\ntags: water, safe\nmeta.by: Ada", ("Tablets",)),
        ("id: 2\nok: true\nparts.0.n: 1", ()),
    ]


def test_json_dict_with_record_list_and_plain_dict() -> None:
    wrapped = {"version": 3, "items": [{"name": "Rope", "m": 30}, {"name": "Knife"}]}
    doc = load_bytes(json.dumps(wrapped).encode(), "kit.json")
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("version: 3", ()),
        ("name: Rope\nm: 30", ("Rope",)),
        ("name: Knife", ("Knife",)),
    ]
    plain = {"water": {"litres": 4}, "fire": "matches"}
    doc = load_bytes(json.dumps(plain).encode(), "plan.json")
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("water.litres: 4", ("water",)),
        ("fire: matches", ("fire",)),
    ]


def test_jsonl_one_block_per_line(tmp_path: Path) -> None:
    path = write(tmp_path, "log.jsonl", '{"name": "a", "v": 1}\n\n{"name": "b", "v": 2}\n')
    doc = load_file(path, "log.jsonl")
    assert [(b.text, b.headings) for b in doc.blocks] == [
        ("name: a\nv: 1", ("a",)),
        ("name: b\nv: 2", ("b",)),
    ]


def test_json_invalid_names_position() -> None:
    with pytest.raises(LoadError, match=r"^bad\.json: invalid JSON at line 2 column \d+"):
        load_bytes(b'{"a": 1,\n "b": }', "bad.json")


def test_jsonl_bad_line_names_line_number() -> None:
    with pytest.raises(LoadError, match=r"^bad\.jsonl: invalid JSON on line 3"):
        load_bytes(b'{"a": 1}\n\n{"a": oops}\n', "bad.jsonl")


# --- Registry-level failures -------------------------------------------------------------------


def test_unsupported_suffix() -> None:
    with pytest.raises(UnsupportedFileError, match=r"^thing\.xyz: unsupported file type '\.xyz'"):
        load_bytes(b"whatever", "thing.xyz")


@pytest.mark.parametrize("name", ["e.pdf", "e.docx", "e.html", "e.md", "e.txt", "e.csv", "e.json", "e.jsonl"])
def test_empty_files_fail(tmp_path: Path, name: str) -> None:
    with pytest.raises(LoadError, match=rf"^{name.replace('.', '[.]')}: "):
        load_file(write(tmp_path, name, b""), name)


def test_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"^gone\.txt: cannot read file"):
        load_file(tmp_path / "gone.txt", "gone.txt")


# --- Robustness --------------------------------------------------------------------------------


def test_html_deep_nesting_is_not_a_recursion_error() -> None:
    depth = 3000
    doc = load_bytes(b"<div>" * depth + b"<p>deep</p>" + b"</div>" * depth, "deep.html")
    assert texts(doc) == ["deep"]


def test_text_stray_nul_is_dropped() -> None:
    assert texts(load_bytes(b"a" * 200 + b"\x00b", "nul.txt")) == ["a" * 200 + "b"]


def test_pdfium_and_pypdf_read_the_same_text_and_the_parse_worker_runs_pdfium() -> None:
    """PDFium is the first engine (faster, ``benchmarks/embed.py --parts pdf``); pypdf reads the same blocks, and
    PDFium works inside the parse worker's address-space ceiling."""
    from outpost.ingest.isolation import open_parser
    from outpost.ingest.limits import ReadLimits
    from outpost.ingest.loaders import pdf

    data = make_pdf(["Water first. Then shelter-\nbuilding.\n\nSignal at dusk.", "Ration: 2 L a day."], title="Kit")
    fast, slow = pdf.extract_with("pypdfium2", data, "kit.pdf"), pdf.extract_with("pypdf", data, "kit.pdf")
    assert fast == slow and fast[0] == "Kit" and [b.page for b in fast[1]] == [1, 2]
    with open_parser(ReadLimits(max_bytes=10**7, timeout_s=60)) as parse:
        doc = parse(data, "kit.pdf")
    assert [(b.text, b.page) for b in doc.blocks] == [(b.text, b.page) for b in fast[1]]
