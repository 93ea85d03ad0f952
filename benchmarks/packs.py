"""Pack size, delta size, apply speed, and what int8 shipping costs in retrieval quality.

On the real NFCorpus chunks and vectors (the cache ``benchmarks/retrieval.py`` builds through the
real ingest pipeline), it prints:

- bytes per chunk of a full snapshot pack, next to the raw float32 vector alone (384 × 4 bytes);
- the size of a delta after changing 1% of the documents, as a fraction of the full pack;
- snapshot apply time for 100k chunks (verify + read + SQLite apply + ANN build), and delta apply
  time for 1k changed chunks on that collection (the 100k set is the real chunks plus perturbed
  copies, as in ``retrieval.py``);
- NFCorpus dev-split nDCG@10 of dense retrieval with the vectors as shipped (int8) against float32.

    python benchmarks/packs.py [--size 100000] [--delta 1000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402

from _common import NFCORPUS, blas_one_thread, folder_bytes, machine  # noqa: E402
from outpost import Outpost  # noqa: E402
from outpost.embed.quantize import quantize  # noqa: E402
from outpost.evaluate import load_qrels, load_queries  # noqa: E402
from outpost.ingest.chunker import chunk_id  # noqa: E402
from outpost.metrics import ndcg_at_k  # noqa: E402
from outpost.packs import generate_key, read_pack, write_pack  # noqa: E402
from outpost.records import Changeset  # noqa: E402
from outpost.store import Store  # noqa: E402
from retrieval import build_real_set, expand  # noqa: E402


def changeset_of(chunks, vectors, documents, real, base=0, version=1):  # type: ignore[no-untyped-def]
    q, s = quantize(vectors)
    return Changeset(
        "bench",
        base,
        list(chunks),
        q,
        s,
        list(documents),
        embedding=real.embedding,
        chunker_id=real.chunker_id,
        version=version,
        snapshot=base == 0,
    )


def revised(chunks, indices, chunker_id: str, suffix: str):  # type: ignore[no-untyped-def]
    """Edited copies of ``chunks[i]``: new text, hence (as in the real pipeline) new ids."""
    return [
        replace(
            chunks[i], text=chunks[i].text + suffix, id=chunk_id(chunker_id, chunks[i].doc_key, chunks[i].text + suffix)
        )
        for i in indices
    ]


def one_percent_delta(real, seed: int = 0):  # type: ignore[no-untyped-def]
    """Change 1% of the documents: their chunks get new text (so new ids) and new vectors."""
    rng = np.random.default_rng(seed)
    keys = sorted({c.doc_key for c in real.chunks})
    changed = set(rng.choice(keys, max(1, len(keys) // 100), replace=False).tolist())
    idx = [i for i, c in enumerate(real.chunks) if c.doc_key in changed]
    new_chunks = revised(real.chunks, idx, real.chunker_id, " (revised)")
    noisy = real.vectors[idx] + 0.05 * rng.standard_normal((len(idx), real.vectors.shape[1])).astype(np.float32)
    cs = changeset_of(new_chunks, noisy, [d for d in real.documents if d.key in changed], real, base=1, version=2)
    cs.delete_chunks = [real.chunks[i].id for i in idx]
    return cs, len(changed), len(idx)


def timed(fn):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def dense_ndcg(real, vectors: np.ndarray, split: str = "dev") -> float:  # type: ignore[no-untyped-def]
    """Dense nDCG@10 over the real chunks, document score = best chunk, exact search on ``vectors``."""
    queries, qrels = load_queries(NFCORPUS / "queries.jsonl"), load_qrels(NFCORPUS / "qrels" / f"{split}.tsv")
    qids = [q for q in qrels if q in queries]
    embedded = Outpost(home=Path(tempfile.mkdtemp())).embedder().embed([queries[q] for q in qids])
    docs = np.array([Path(c.doc_key).stem for c in real.chunks])
    mat = vectors.astype(np.float32)
    mat /= np.linalg.norm(mat, axis=1, keepdims=True)
    total = 0.0
    for qid, q in zip(qids, embedded):
        order = np.argsort(-(mat @ q))[:300]
        ranked = list(dict.fromkeys(docs[order].tolist()))
        total += ndcg_at_k(ranked, qrels[qid])
    return total / len(qids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--delta", type=int, default=1_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    op = Outpost(home=Path(tempfile.mkdtemp(prefix="outpost-packs-bench-")))
    real = build_real_set(op, op.embedder())
    work = Path(tempfile.mkdtemp(prefix="outpost-packs-"))
    key = generate_key(work / "key.pem")
    result: dict[str, object] = {"machine": machine(), "real_chunks": len(real.chunks)}

    full = changeset_of(real.chunks, real.vectors, real.documents, real)
    write_pack(full, work / "snapshot-1", key)
    full_bytes = folder_bytes(work / "snapshot-1")
    text_bytes = sum(len(c.text.encode()) for c in real.chunks)
    result["snapshot"] = {
        "bytes": full_bytes,
        "bytes_per_chunk": full_bytes / len(real.chunks),
        "float32_vector_bytes_per_chunk": real.vectors.shape[1] * 4,
        "raw_text_bytes_per_chunk": text_bytes / len(real.chunks),
    }
    delta, docs_changed, chunks_changed = one_percent_delta(real)
    write_pack(delta, work / "delta-1-2", key)
    delta_bytes = folder_bytes(work / "delta-1-2")
    result["delta_1pct"] = {
        "documents_changed": docs_changed,
        "chunks_changed": chunks_changed,
        "bytes": delta_bytes,
        "fraction_of_full": delta_bytes / full_bytes,
    }

    coll = expand(real, args.size)
    big = changeset_of(coll.chunks, coll.vectors, coll.documents, real)
    write_pack(big, work / "big-1", key)
    public = key.public_key()
    from outpost.packs import public_key_text

    hub_key = public_key_text(public)
    with blas_one_thread():
        (_, cs), read_s = timed(lambda: read_pack(work / "big-1", hub_key))
        store = Store.open(work / "client", "bench", create=True)
        _, apply_s = timed(lambda: store.apply(cs))
        rng = np.random.default_rng(1)
        pick = rng.choice(len(coll.chunks), args.delta, replace=False)
        changed = revised(coll.chunks, pick, real.chunker_id, " v2")
        dcs = changeset_of(changed, coll.vectors[pick], [], real, base=1, version=2)
        dcs.delete_chunks = [coll.chunks[i].id for i in pick]
        write_pack(dcs, work / "big-delta", key)
        (_, dread), dread_s = timed(lambda: read_pack(work / "big-delta", hub_key))
        _, dapply_s = timed(lambda: store.apply(dread))
    result["apply"] = {
        "snapshot_chunks": args.size,
        "snapshot_pack_bytes": folder_bytes(work / "big-1"),
        "snapshot_verify_read_s": read_s,
        "snapshot_apply_s_incl_ann": apply_s,
        "delta_chunks": args.delta,
        "delta_verify_read_s": dread_s,
        "delta_apply_s": dapply_s,
        "synthetic_chunks": args.size - coll.real,
    }
    with blas_one_thread():
        f32 = dense_ndcg(real, real.vectors)
        q, s = quantize(real.vectors)
        i8 = dense_ndcg(real, q.astype(np.float32))
    result["quality_dev"] = {"ndcg@10_float32": f32, "ndcg@10_int8_as_shipped": i8, "relative_change": (i8 - f32) / f32}

    if args.json:
        print(json.dumps(result, indent=2))
        return
    snap, delta_r, ap, qual = result["snapshot"], result["delta_1pct"], result["apply"], result["quality_dev"]
    print(f"NFCorpus real chunks: {len(real.chunks)}  ({result['machine']})")
    print(
        f"full pack: {snap['bytes'] / 1e6:.2f} MB = {snap['bytes_per_chunk']:.0f} B/chunk "
        f"(float32 vector alone: {snap['float32_vector_bytes_per_chunk']} B; "
        f"raw text {snap['raw_text_bytes_per_chunk']:.0f} B)"
    )
    print(
        f"delta after 1% of documents changed ({delta_r['documents_changed']} docs, "
        f"{delta_r['chunks_changed']} chunks): "
        f"{delta_r['bytes'] / 1e3:.1f} kB = {100 * delta_r['fraction_of_full']:.2f}% of the full pack"
    )
    print(
        f"snapshot of {ap['snapshot_chunks']} chunks ({ap['synthetic_chunks']} synthetic): verify+read "
        f"{ap['snapshot_verify_read_s']:.2f} s, apply (SQLite+FTS5+ANN) {ap['snapshot_apply_s_incl_ann']:.2f} s"
    )
    print(
        f"delta of {ap['delta_chunks']} chunks on it: verify+read {ap['delta_verify_read_s']:.3f} s, "
        f"apply {ap['delta_apply_s']:.2f} s"
    )
    print(
        f"NFCorpus dev dense nDCG@10: float32 {qual['ndcg@10_float32']:.4f}, int8 as shipped "
        f"{qual['ndcg@10_int8_as_shipped']:.4f} ({100 * qual['relative_change']:+.2f}%)"
    )


if __name__ == "__main__":
    main()
