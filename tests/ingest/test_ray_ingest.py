"""`outpost hub ingest --ray`: the batch stages on a real local Ray cluster give what the local path gives.

The cluster is real (`ray start --head --block`, 2 CPUs, loopback port, its own temp folder), started by the
fixture in its own process group and ended by that group's id, never by `ray stop` (which ends every Ray
process of the user on the machine, other people's included). Ray keeps state under ``~/.ray`` (an auth token
there turns token auth on), so the cluster and the CLI run with ``HOME`` in the cluster's temp folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from hubkit import free_port, outpost_cli
from outpost.app import Outpost
from outpost.embed.encoders import encoders_dir, load_encoder
from outpost.embed.quantize import quantize
from outpost.hub.embedder import publish_embedder
from outpost.hub.home import HubHome
from outpost.hub.service import Hub
from outpost.ingest.chunker import embedding_text
from outpost.records import EmbeddingIdentity
from outpost.settings import Settings
from outpost.store.sqlite import Store

pytest.importorskip("ray.data", reason="the Ray extra (pip install 'outpost[ray]') is not installed")

RAY = Path(sys.executable).with_name("ray")


def _ours(marker: str) -> list[int]:
    """Pids of processes whose command line names our cluster's private temp folder (only ours do)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError("the Ray head did not listen in time")


@dataclass(frozen=True)
class RayCluster:
    address: str
    home: Path  # HOME for every process that talks to it


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """A throwaway 2-CPU Ray head on 127.0.0.1."""
    temp = tempfile.mkdtemp(prefix="outpost-ray-")  # short: Ray's socket paths must fit in 107 bytes
    home = Path(temp) / "home"
    home.mkdir()
    port = free_port()
    command = [str(RAY), "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0"]
    command += ["--port", str(port), "--node-ip-address", "127.0.0.1", "--temp-dir", temp]
    command += ["--include-dashboard", "false", "--disable-usage-stats"]
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env
    )
    try:
        _wait_for_port(port, proc)
        yield RayCluster(f"127.0.0.1:{port}", home)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # `ray start --block` ends the processes it started
        try:
            proc.wait(timeout=10)  # it rarely finishes on SIGTERM alone: SIGKILL the group then
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in _ours(temp):  # anything of this cluster that left the group
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def _state(home: Path) -> tuple[int, list[str], np.ndarray, np.ndarray, dict[str, str]]:
    store = Store.open(HubHome.at(home).collections_dir, "docs")
    try:
        ids, vectors, scales = store.vectors()
        order = np.argsort(ids)
        return (
            store.version,
            [ids[i] for i in order],
            vectors[order],
            scales[order],
            store.document_hashes(),
        )
    finally:
        store.close()


def _local_ingest(home: Path, docs: Path, sync: bool = False) -> None:
    settings = Settings(home=home)
    op = Outpost(settings=settings)
    embedder = op.embedder()
    Hub(HubHome.at(home)).ingest([docs], "docs", embedder, op.chunker(embedder), sync)


def _assert_same(a: Path, b: Path) -> None:
    version_a, ids_a, vectors_a, scales_a, docs_a = _state(a)
    version_b, ids_b, vectors_b, scales_b, docs_b = _state(b)
    assert (version_a, docs_a) == (version_b, docs_b)
    assert ids_a == ids_b and len(ids_a) > 20
    assert np.array_equal(vectors_a, vectors_b)  # the same int8 bytes, not merely close
    assert np.array_equal(scales_a, scales_b)


@pytest.mark.slow
def test_ray_ingest_matches_local(
    ray_cluster: RayCluster, tmp_path: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(ray_cluster.home))  # for the CLI processes below
    monkeypatch.setenv("OUTPOST_EMBED_BATCH_SIZE", "4")  # many batches, so how they are cut matters to the test
    docs = tmp_path / "docs"
    shutil.copytree(sample_dir, docs)
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    for home in (local, on_ray):
        HubHome.at(home).init()

    _local_ingest(local, docs)
    address = ray_cluster.address
    result = outpost_cli("hub", "ingest", str(docs), "-c", "docs", "-q", "--ray-address", address, home=on_ray)
    assert result.returncode == 0, result.stderr
    _assert_same(local, on_ray)

    # a delta: one edited file (its unchanged chunks reuse stored vectors), one new, one removed with --sync
    handbook = docs / "employee-handbook.md"
    handbook.write_text(handbook.read_text() + "\n\n## Parking\n\nBicycles park in the courtyard racks.\n")
    (docs / "new.txt").write_text("The cafeteria serves lunch from noon until two.\n")
    (docs / "offices.csv").unlink()
    _local_ingest(local, docs, sync=True)
    on_cluster = ("--ray", "--ray-address", address)  # --ray-address alone implies --ray (first run)
    result = outpost_cli("hub", "ingest", str(docs), "-c", "docs", "--sync", *on_cluster, home=on_ray)
    assert result.returncode == 0, result.stderr
    assert "1 added, 1 updated, 1 removed" in result.stderr
    assert "INFO" not in result.stderr  # Ray's own chatter stays out of the CLI's output
    _assert_same(local, on_ray)
    assert _state(on_ray)[0] == 2


def _identity(home: Path) -> EmbeddingIdentity | None:
    store = Store.open(HubHome.at(home).collections_dir, "docs")
    try:
        return store.embedding
    finally:
        store.close()


@pytest.mark.slow
def test_ray_ingest_into_a_switched_collection_embeds_with_its_encoder(
    ray_cluster: RayCluster, tmp_path: Path, sample_dir: Path, tuned_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collection switched to a fine-tuned embedder (issue 15): `hub ingest --ray` embeds its new chunks with the
    collection's shipped encoder (its folder and sha256 travel to the actors), as the local path does: the same
    chunk ids and int8 bytes. Before, the actors loaded the settings' model, whose vectors were published under
    the encoder's identity (and compared with queries embedded by the encoder)."""
    monkeypatch.setenv("HOME", str(ray_cluster.home))
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "alpha.md").write_text("# Alpha\n\nThe alpha project launches on 3 March.\n")
    (docs / "oncall.txt").write_text("On call this week: Ada. Escalate to Grace after one hour.\n")
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    HubHome.at(local).init()
    _local_ingest(local, docs)
    assert publish_embedder(Hub(HubHome.at(local)), "docs", tuned_model, {}) == 2
    switched = _identity(local)
    assert switched is not None and "+ft-" in switched.name
    shutil.copytree(local, on_ray)  # the same switched hub twice (one export, one re-embedding)

    shutil.copytree(sample_dir, docs, dirs_exist_ok=True)  # new documents: embedded by each path
    _local_ingest(local, docs)
    address = ray_cluster.address
    result = outpost_cli("hub", "ingest", str(docs), "-c", "docs", "-q", "--ray-address", address, home=on_ray)
    assert result.returncode == 0, result.stderr
    _assert_same(local, on_ray)
    assert _identity(local) == _identity(on_ray) == switched

    # What both hold is the encoder's vectors, not the settings' model's.
    store = Store.open(HubHome.at(on_ray).collections_dir, "docs")
    try:
        chunk = next(c for c in store.snapshot().upserts if c.doc_key == "employee-handbook.md")
        stored = dict(zip(*store.vectors()[:2]))[chunk.id].tobytes()
    finally:
        store.close()
    encoder = load_encoder(encoders_dir(HubHome.at(on_ray).root) / switched.weights_sha256, switched.weights_sha256)
    base = Outpost(settings=Settings(home=on_ray)).embedder()
    text = [embedding_text(chunk)]
    assert stored == quantize(encoder.embed(text))[0][0].tobytes()
    assert stored != quantize(base.embed(text))[0][0].tobytes()


def test_core_never_imports_ray() -> None:
    """Ray is an extra: importing the CLI, the hub and the Ray stages module itself loads no `ray`."""
    code = (
        "import sys, outpost.cli.hub, outpost.hub.service, outpost.ingest.ray_pipeline; "
        "sys.exit('ray' in sys.modules or 'ray.data' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
