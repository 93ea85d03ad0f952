"""The one atomic-write helper: whole files or nothing, private from birth, fsynced (file and folder)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from outpost.fsutil import atomic_file, atomic_write_bytes, atomic_write_text, commit_file


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # the usual umask: a plain open() would make files 0644
    yield
    os.umask(old)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What each os.fsync call synced ("dir" or "file"); the real fsync still runs."""
    kinds: list[str] = []
    real = os.fsync

    def recording(fd: int) -> None:
        kinds.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return kinds


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_write_is_whole_private_and_synced(tmp_path: Path, umask_022: None, synced: list[str]) -> None:
    path = tmp_path / "hub.json"
    path.write_text("old")
    path.chmod(0o644)  # an older, looser file is replaced by a private one
    assert atomic_write_text(path, '{"token": "t0ken"}') == path
    assert path.read_text() == '{"token": "t0ken"}' and _mode(path) == 0o600
    assert synced == ["file", "dir"]  # the bytes, then the rename
    assert [p.name for p in tmp_path.iterdir()] == ["hub.json"]  # no temp file left
    atomic_write_bytes(path, b"\x00\x01", mode=0o644)
    assert path.read_bytes() == b"\x00\x01" and _mode(path) == 0o644  # a mode can be asked for


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "remotes.json"
    atomic_write_text(path, "before")
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write(b"half of the new")
        raise RuntimeError("the disk filled up")
    assert path.read_text() == "before"
    assert [p.name for p in tmp_path.iterdir()] == ["remotes.json"]


def test_commit_file_finishes_a_file_another_library_wrote(tmp_path: Path, umask_022: None, synced: list[str]) -> None:
    tmp = tmp_path / "download.part"
    tmp.write_bytes(b"gguf bytes")
    assert _mode(tmp) == 0o644
    final = commit_file(tmp, tmp_path / "sha256-abc.gguf")
    assert final.read_bytes() == b"gguf bytes" and _mode(final) == 0o600 and not tmp.exists()
    assert synced == ["file", "dir"]
