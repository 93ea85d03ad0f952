"""Filesystem → ingest: a folder full of traps is ingested without hanging, leaking or blowing up.

The attacker writes into a folder someone ingests (a shared drive, a hub's docs folder): links out
of the root, FIFOs, devices, zip and XML bombs, damaged PDFs, binary data under text names, inputs
that make regexes or parsers slow. The big test runs the real ``outpost ingest`` (real MiniLM,
real SQLite) over ``hostile_folder.build`` and measures the subprocess's peak memory; the hub test
plants a link to the hub's own signing key. The fast tests pin each defence on its own: the
walk/open race, the time budget, the zip bounds, and the linear rewrites of the quadratic regexes
(compared with the old patterns on ordinary input, never timed).
"""

from __future__ import annotations

import io
import os
import random
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import docx
import psutil
import pytest

from hubkit import outpost_cli
from outpost import Outpost
from outpost.errors import LoadError
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.ingest import ReadLimits, discover, read_batch
from outpost.ingest.discover import NAMED_LINK, SourceFile
from outpost.ingest.fileread import MB, read_regular_file
from outpost.ingest.isolation import IsolatedParser
from outpost.ingest.loaders import load_bytes
from outpost.ingest.loaders._common import clean
from outpost.ingest.loaders._zip import check_zip
from outpost.ingest.loaders.csv import _delimiter
from outpost.ingest.loaders.markdown import _front_matter_title, strip_html
from outpost.store import Store
from security.hostile_folder import OVERSIZE_MB, SECRET, build

PEAK_RSS_LIMIT_MB = 2500
FAILURE_LINE = re.compile(r"^skipped (?P<key>\S+): (?P<reason>.*)$")


# -- the whole folder, through the real CLI -------------------------------------------------


def _hwm_mb(pid: int) -> float:
    """The peak RSS (VmHWM) of a running process, 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def _run_measured(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, float, float]:
    """Run ``command``; (exit code, stderr, peak RSS in MB of it or any of its children, seconds).

    The peak is each process's own VmHWM, sampled while it runs. Not ``ru_maxrss``: a child started by
    vfork/fork + exec inherits the parent's high-water mark, so a 3 GB pytest process made a 300 MB ingest
    read as 3 GB (seen in the full suite).
    """
    started = time.monotonic()
    peak = 0.0
    with (
        open(os.devnull, "wb") as devnull,
        subprocess.Popen(command, env=env, stdout=devnull, stderr=subprocess.PIPE) as proc,
    ):
        stderr = b""
        os.set_blocking(proc.stderr.fileno(), False)  # type: ignore[union-attr]
        watched = psutil.Process(proc.pid)
        while True:
            stderr += proc.stderr.read() or b""  # type: ignore[union-attr]
            try:
                family = [proc.pid, *(child.pid for child in watched.children(recursive=True))]
            except psutil.Error:
                family = [proc.pid]
            peak = max([peak, *(_hwm_mb(pid) for pid in family)])
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                stderr += proc.stderr.read() or b""  # type: ignore[union-attr]
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                pytest.fail(f"ingest still running after {timeout} s (a FIFO or a parser hung?)")
            time.sleep(0.1)
    return proc.returncode, stderr.decode(), peak, time.monotonic() - started


def _failures(stderr: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        if match := FAILURE_LINE.match(line):
            found.setdefault(match["key"], []).append(match["reason"])
    return found


@pytest.mark.slow
def test_a_hostile_folder_is_ingested_file_by_file(tmp_path: Path, home: Path) -> None:  # noqa: C901
    folder = build(tmp_path / "root", tmp_path / "outside")
    assert folder.entries >= 500
    env = {**os.environ, "OUTPOST_HOME": str(home), "HF_HUB_OFFLINE": "1", "OUTPOST_MAX_FILE_MB": str(OVERSIZE_MB)}
    command = [sys.executable, "-m", "outpost", "ingest", str(folder.root), "--collection", "hostile", "--quiet"]
    code, stderr, peak_mb, seconds = _run_measured(command, env, timeout=600)

    assert code == 1, stderr[-2000:]
    failures = _failures(stderr)
    for key, words in folder.bad.items():
        assert key in failures, f"{key} was not reported"
        assert len(failures[key]) == 1, f"{key} reported {len(failures[key])} times"
        assert all(word in failures[key][0] for word in words), f"{key}: {failures[key][0]!r} lacks {words}"
    for key in folder.damaged & set(failures):
        (reason,) = failures[key]
        assert reason.startswith(("cannot read pdf", "no text found in pdf")) or "abandoned" in reason, reason
    unexpected = set(failures) - set(folder.bad) - folder.damaged
    assert not unexpected, {k: failures[k] for k in unexpected}
    assert 50 < peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"  # 50: it was measured at all

    store = Store.open(home / "collections", "hostile")
    ingested = set(store.document_hashes())
    assert ingested == set(folder.good) | (folder.damaged - set(failures))
    op = Outpost(home=home)
    for key, marker in folder.good.items():
        hits = op.search(marker, "hostile", k=3, mode="bm25")
        assert hits and hits[0].chunk.doc_key == key, (key, marker)
    assert not op.search(SECRET, "hostile", k=3, mode="bm25"), "text from outside the root was ingested"
    longest = store.db.execute("SELECT max(length(text)) FROM chunks_text").fetchone()[0]  # unpacked (migration 5)
    laughs = store.db.execute("SELECT count(*) FROM chunks_text WHERE text LIKE '%lollollol%'").fetchone()[0]
    assert laughs == 0 and longest < 2 * MB, "an entity was expanded"
    print(f"\n{folder.entries} entries, {len(failures)} reported, {len(ingested)} ingested; "
          f"{seconds:.1f} s, peak RSS {peak_mb:.0f} MB")  # fmt: skip


@pytest.mark.slow
def test_hub_ingest_does_not_publish_a_link_to_its_signing_key(tmp_path: Path, home: Path) -> None:
    assert outpost_cli("hub", "init", home=home).returncode == 0
    key_path = HubHome.at(home).key_path
    docs = tmp_path / "shared-docs"
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n\nThe ferry leaves at nine.\n")
    (docs / "key.pem").symlink_to(key_path)  # what anyone with write access to the docs folder can plant
    (docs / "notes.txt").symlink_to(key_path)  # under a name a loader reads
    (docs / "keys").symlink_to(key_path.parent)

    result = outpost_cli("hub", "ingest", str(docs), "--collection", "shared", home=home)

    assert result.returncode == 1
    failures = _failures(result.stderr)
    assert failures["key.pem"] == ["symbolic link to a file outside the ingest root; links are not followed"]
    assert failures["notes.txt"] == failures["key.pem"]
    assert failures["keys"] == ["symbolic link to a folder outside the ingest root; links are not followed"]
    store = Hub(HubHome.at(home)).store("shared")
    try:
        assert set(store.document_hashes()) == {"guide.md"}
        assert not store.bm25("PRIVATE KEY", 5)
    finally:
        store.close()
    # named one by one (a shell glob over the folder) it is refused too
    result = outpost_cli("hub", "ingest", str(docs / "notes.txt"), str(docs / "key.pem"), "-c", "shared", home=home)
    assert result.returncode == 1
    assert _failures(result.stderr) == {name: [NAMED_LINK] for name in ("notes.txt", "key.pem")}


# -- discovery and opening ------------------------------------------------------------------


def test_walk_never_follows_links_and_folder_loops_end(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "doc.md").write_text("# Doc\n\nText.\n")
    (root / "a" / "b" / "up").symlink_to("../..")  # a loop back to the root
    (root / "a" / "again.md").symlink_to("b/doc.md")  # inside the root: its target is ingested anyway
    (root / "out.md").symlink_to(tmp_path)  # a folder outside
    found = {f.key: f.problem for f in discover([root])}
    assert found == {
        "a/b/doc.md": None,
        "out.md": "symbolic link to a folder outside the ingest root; links are not followed",
    }


def test_a_named_symlink_is_refused_when_read(tmp_path: Path) -> None:
    (tmp_path / "real.txt").write_text("real")
    (tmp_path / "link.txt").symlink_to(tmp_path / "real.txt")
    docs, _, errors = read_batch(discover([tmp_path / "link.txt"]), {}, ReadLimits(MB, 0))
    assert not docs and [(e.path, e.reason) for e in errors] == [("link.txt", NAMED_LINK)]


def test_a_file_swapped_after_the_walk_is_refused_at_open(tmp_path: Path) -> None:
    """The walk saw regular files; then each is swapped (FIFO, link, a folder on its path made a link)."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    for name in ("fifo.txt", "link.txt", "sub/inner.txt", "ok.txt"):
        (root / name).write_text("harmless text")
    (tmp_path / "secret.txt").write_text(SECRET)
    files = discover([root])
    assert all(f.problem is None for f in files)

    (root / "fifo.txt").unlink()
    os.mkfifo(root / "fifo.txt")  # no writer: a plain open() would block forever
    (root / "link.txt").unlink()
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "sub").rename(root / "moved")
    (root / "sub").symlink_to(tmp_path)  # sub/inner.txt now resolves outside the root
    (tmp_path / "inner.txt").write_text(SECRET)

    docs, _, errors = read_batch(files, {}, ReadLimits(MB, 0))
    assert [d.key for d in docs] == ["ok.txt"]
    assert {e.path: e.reason for e in errors} == {
        "fifo.txt": "a FIFO (named pipe), not a regular file",
        "link.txt": NAMED_LINK,
        "sub/inner.txt": "folder 'sub' on its path is not a real folder (a link?)",
    }


def test_reads_stop_at_the_size_cap(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"word " * (MB // 5 + 1))
    item = SourceFile(tmp_path / "big.txt", "big.txt", tmp_path)
    with pytest.raises(LoadError, match=r"^big\.txt: larger than the 1 MB limit \(setting max_file_mb\)"):
        read_regular_file(item, MB)
    assert len(read_regular_file(item, 2 * MB)) == 5 * (MB // 5 + 1)


def test_a_key_that_climbs_out_of_its_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.txt").write_text(SECRET)
    with pytest.raises(LoadError, match="not a plain relative path"):
        read_regular_file(SourceFile(tmp_path / "root" / ".." / "secret.txt", "../secret.txt", tmp_path / "root"), MB)


# -- the time budget ------------------------------------------------------------------------


def test_a_parse_over_budget_is_abandoned_and_the_next_file_still_parses() -> None:
    slow = ("# Heading\n\n" + "Some *emphasis* and a [link](http://x) in a paragraph.\n\n" * 150_000).encode()
    with IsolatedParser(ReadLimits(200 * MB, timeout_s=0.2)) as parse:
        with pytest.raises(LoadError, match=r"^slow\.md: parsing took longer than 0\.2 s \(setting file_timeout_s\)"):
            parse(slow, "slow.md")  # ~8 MB of Markdown: seconds of pure-Python parsing
        doc = parse(b"# Quick\n\nA short note.\n", "quick.md")
    assert doc.title == "Quick" and [b.text for b in doc.blocks] == ["A short note."]


def test_a_worker_that_dies_mid_file_is_reported_and_replaced() -> None:
    slow = ("# Heading\n\n" + "A paragraph of *plain* words.\n\n" * 300_000).encode()  # seconds to parse
    with IsolatedParser(ReadLimits(200 * MB, timeout_s=120)) as parse:
        worker = parse._proc
        assert worker is not None
        threading.Timer(1.0, worker.kill).start()  # as the kernel's OOM killer or a segfault would
        with pytest.raises(
            LoadError, match=r"^slow\.md: the parser process died while reading this file \(killed by SIGKILL\)"
        ):
            parse(slow, "slow.md")
        assert parse(b"plain text", "next.txt").blocks[0].text == "plain text"


def test_the_worker_reports_loader_errors_and_returns_the_same_document_as_in_process() -> None:
    data = b"# Title\n\nPara one.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    with IsolatedParser(ReadLimits(MB, 30)) as parse:
        assert parse(data, "t.md") == load_bytes(data, "t.md")
        with pytest.raises(LoadError, match=r"^x\.json: invalid JSON"):
            parse(b"{", "x.json")


# -- zip and XML bombs ----------------------------------------------------------------------


def _docx(**replace: bytes) -> bytes:
    out = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("Plain text.")
    document.save(out)
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as src:
        members = {name: src.read(name) for name in src.namelist()}
    members.update({name.replace("__", "/"): data for name, data in replace.items()})
    result = io.BytesIO()
    with zipfile.ZipFile(result, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    return result.getvalue()


def test_an_ordinary_docx_passes_the_zip_checks() -> None:
    data = _docx()
    check_zip(data, "ok.docx")
    assert [b.text for b in load_bytes(data, "ok.docx").blocks] == ["Plain text."]


@pytest.mark.parametrize(
    ("members", "reason"),
    [
        ({"word__document.xml": b"\0" * (8 * MB)}, r"compresses \d+:1 \(limit 200:1\): a zip bomb"),
        ({f"word__m{n}.bin": b"" for n in range(5001)}, r"lists 50\d\d members \(limit 5000\)"),
        ({"word__document.xml": b'<!DOCTYPE w [<!ENTITY a "b">]><w>&a;</w>'}, "declares a DTD"),
        ({"word__styles.xml": '<!DOCTYPE s SYSTEM "file:///etc/passwd"><s/>'.encode("utf-16")}, "declares a DTD"),
    ],
    ids=["zeros", "members", "entity", "utf16-dtd"],
)
def test_zip_bombs_and_dtds_are_refused(members: dict[str, bytes], reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        load_bytes(_docx(**members), "bomb.docx")


def test_python_docx_would_not_expand_entities_anyway() -> None:
    """Defence in depth under the DTD check: python-docx's parser leaves entity references unexpanded,
    and libxml2 refuses an amplification outright."""
    from docx.oxml.parser import parse_xml
    from lxml import etree

    element = parse_xml(b'<!DOCTYPE r [<!ENTITY e "expanded">]><r>&e;</r>')
    assert "expanded" not in "".join(element.itertext())
    levels = "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 9))
    with pytest.raises(etree.XMLSyntaxError, match="amplification"):
        parse_xml(f'<!DOCTYPE r [<!ENTITY l0 "lol">{levels}]><r>&l8;</r>'.encode())


# -- regexes that used to be quadratic ------------------------------------------------------

_OLD_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_OLD_TAG = re.compile(r"<[^>]+>")
_OLD_TITLE = re.compile(r"^title:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


def test_strip_html_matches_the_old_patterns_on_any_input() -> None:
    rng = random.Random(7)
    alphabet = ["<", ">", "!", "-", "--", "<!--", "-->", "a", " ", "\n", "p", "/"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        old = clean(_OLD_TAG.sub(" ", _OLD_COMMENT.sub(" ", text)))
        assert strip_html(text) == old, repr(text)


@pytest.mark.parametrize(
    "front",
    [
        "title: Field Guide",
        "author: x\ntitle:   'Quoted'  \nother: y",
        'title: "Dq"\r',
        "no: title",
        "title:\ntitle: Two",
    ],
)
def test_front_matter_title_matches_the_old_pattern(front: str) -> None:
    found = _OLD_TITLE.search(front)
    old = found.group(1).strip().strip("'\"").strip() if found else ""
    assert _front_matter_title(front) == old


def test_adversarial_markdown_still_loads_every_block() -> None:
    """Inputs that took seconds per 32 KB before (front-matter title, unclosed comments and tags), at 100 KB."""
    body = "Real paragraph."
    cases = {
        "title.md": "---\ntitle: x" + " " * 100_000 + "y\n---\n\n" + body,
        "comments.md": body + "\n\n<!--" + "<!--" * 25_000,
        "tags.md": body + "\n\n<div>" + "<" * 100_000,
        "closed.md": body + "\n\n<div>" + "<!-- c -->" * 10_000 + "</div>",
    }
    for name, text in cases.items():
        doc = load_bytes(text.encode(), name)
        assert doc.blocks[0].text == body, name
    assert load_bytes(cases["title.md"].encode(), "title.md").title == "x" + " " * 100_000 + "y"
    assert load_bytes(cases["closed.md"].encode(), "closed.md").blocks[1:] == ()


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("a,b,c\n1,2,3\n4,5,6\n", ","),
        ("name;city\nAda;London\nGrace;New York\n", ";"),
        ("x|y\n1|2\n", "|"),
        ('q,note\n1,"semi; colon, comma"\n2,plain\n', ","),
        ("single column\nvalue\n", ","),
    ],
)
def test_csv_delimiter_guess_agrees_with_the_sniffer_on_ordinary_files(text: str, delimiter: str) -> None:
    assert _delimiter(text, "t.csv") == delimiter


def test_csv_that_stalled_the_sniffer_loads() -> None:
    """64 KB of ``,"`` took csv.Sniffer 18 s; the linear guess reads it at once."""
    data = ("id,remark\n1,first row\n" + ',"' * 32_000 + "\n").encode()
    doc = load_bytes(data, "stall.csv")
    assert doc.blocks[0].text == "id: 1; remark: first row"


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("hyphen.txt", "Real para-" + " " * 100_000 + "\ngraph.", "Real para-"),
        ("blank.txt", "First.\n" + " " * 100_000 + "\nSecond.", "First."),
        ("meta.html", "<meta" * 20_000 + "><p>Body text.</p>", "Body text."),
        ("camel.html", f'<p class="{"aB" * 50_000}">Body text.</p>', "Body text."),
        ("deep.json", '{"a": "' + "\\" * 100_000 + '", "title": "T"}', "a: " + "\\" * 50_000),
        ("spaces.md", "# H\n\n" + "word" + " \t" * 50_000 + "end", "word end"),
    ],
)
def test_other_ingest_patterns_stay_linear_on_adversarial_input(name: str, data: str, expected: str) -> None:
    """Each remaining regex under src/outpost/ingest on its worst input (measured linear; a regression
    to quadratic would make this test take minutes, not fail on a timer)."""
    doc = load_bytes(data.encode(), name)
    assert doc.blocks[0].text.startswith(expected), doc.blocks[0].text[:80]


def test_sentence_split_stays_linear_on_adversarial_input() -> None:
    from outpost.ingest.chunker import split_sentences

    text = "End. " + " " * 100_000 + "lower case. Upper case."
    assert split_sentences(text) == ["End." + " " * 100_001 + "lower case.", "Upper case."]
