"""What shipping a new embedder costs: re-embedding time on the hub and the pack a laptop downloads.

On NFCorpus documents (the first ``--docs``), through the real hub code:

1. baseline — ``Hub.ingest`` with the settings' embedder (the base MiniLM on ONNX Runtime, fp32): read, chunk,
   embed, write the snapshot pack; its pack size per chunk is what a laptop downloads for a whole collection;
2. ``publish_embedder`` with ``--model`` (a sentence-transformers folder; default: the bundled MiniLM folder,
   which costs exactly what a fine-tuned copy of it costs): export + probe check, re-embed every chunk with the
   exported graph, write the re-vectoring delta; its size per chunk is what a laptop downloads to switch
   (plus the encoder itself, once per laptop, printed separately).

Both embed the same chunks with graphs of the same size in one run, so their chunks/s compare directly.

    nice -n 10 python benchmarks/embedder_shipping.py [--docs 1000] [--model PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from _common import folder_bytes, load_corpus, machine, write_markdown  # noqa: E402
from outpost import Outpost  # noqa: E402
from outpost.embed.local_model import resolve_model_dir  # noqa: E402
from outpost.hub.embedder import embedder_history, publish_embedder  # noqa: E402
from outpost.hub.home import HubHome  # noqa: E402
from outpost.hub.service import Hub  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000, help="NFCorpus documents (0: all 3,633)")
    parser.add_argument("--model", type=Path, default=None, help="fine-tuned sentence-transformers folder")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    model = args.model or resolve_model_dir("all-MiniLM-L6-v2")

    work = Path(tempfile.mkdtemp(prefix="outpost-embedder-shipping-"))
    op = Outpost(home=work / "home")
    hub_home = HubHome.at(work / "home")
    hub_home.init()
    hub = Hub(hub_home)
    corpus = load_corpus(args.docs or None)
    write_markdown(corpus, work / "docs")
    embedder = op.embedder()
    embedder.embed(["warm up"])  # the base graph's one-time export and load stay out of the baseline's time

    start = time.perf_counter()
    report = hub.ingest([work / "docs"], "nfcorpus", embedder, op.chunker(embedder))
    ingest_s = time.perf_counter() - start
    chunks = hub.info("nfcorpus").chunks
    snapshot = folder_bytes(hub_home.packs_dir / "nfcorpus" / "snapshot-1")

    start = time.perf_counter()
    version = publish_embedder(hub, "nfcorpus", Path(model), {"benchmark": "cost only"})
    publish_s = time.perf_counter() - start
    switch = embedder_history(hub, "nfcorpus")[-1]
    delta = folder_bytes(hub_home.packs_dir / "nfcorpus" / f"delta-1-{version}")
    vectors_file = (hub_home.packs_dir / "nfcorpus" / f"delta-1-{version}" / "vectors.parquet").stat().st_size

    base = {
        "seconds": round(ingest_s, 1),
        "chunks_per_s": round(report.chunks_embedded / ingest_s, 1),
        "snapshot_bytes_per_chunk": round(snapshot / chunks, 1),
    }
    new = {
        "publish_seconds": round(publish_s, 1),
        "reembed_seconds": switch.reembed_seconds,
        "reembed_chunks_per_s": round(chunks / switch.reembed_seconds, 1),
        "export_and_publish_overhead_s": round(publish_s - switch.reembed_seconds, 1),
        "delta_bytes_per_chunk": round(delta / chunks, 1),
        "vectors_parquet_bytes_per_chunk": round(vectors_file / chunks, 1),
        "encoder_bytes_once_per_laptop": (switch.encoder or {}).get("graph_bytes", 0),
        "encoder_variant": (switch.encoder or {}).get("variant", ""),
    }
    facts = machine()
    if args.json:
        result = {"machine": facts, "documents": len(corpus), "chunks": chunks, "baseline": base, "new_embedder": new}
        print(json.dumps(result, indent=2))
        return
    print(
        f"NFCorpus {len(corpus)} documents -> {chunks} chunks; load {facts['loadavg_1m_at_start']} on {facts['cores']}"
    )
    print(f"{'':42}{'seconds':>9}{'chunks/s':>10}{'pack B/chunk':>14}")
    row = "{:42}{:>9}{:>10}{:>14}"
    print(row.format("baseline: hub ingest (read, chunk, embed)", *(base[k] for k in list(base))))
    print(
        row.format(
            "new embedder: re-embed, delta pack",
            new["reembed_seconds"],
            new["reembed_chunks_per_s"],
            new["delta_bytes_per_chunk"],
        )
    )
    print(
        f"vectors.parquet alone: {new['vectors_parquet_bytes_per_chunk']} B/chunk; export + probe check + publish: "
        f"{new['export_and_publish_overhead_s']} s; encoder, once per laptop: "
        f"{int(new['encoder_bytes_once_per_laptop']) / 1e6:.1f} MB ({new['encoder_variant']})"
    )


if __name__ == "__main__":
    main()
