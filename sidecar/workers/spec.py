"""What a worker process needs to serve one deployment, sent to it when it is spawned."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class WorkerSpec:
    model_id: str
    definition: Path  # the assembled TorchScript file
    task: str  # key of inference_config, e.g. "ner"
    task_config: dict[str, Any]  # inference_config[task] as stored
    vocabulary: dict[str, Any]
    cores: tuple[int, ...]  # CPUs this worker is pinned to
    threads: int  # torch intra-op threads (inference_threads)
    max_batch_tokens: int
    trusted: bool  # skip the TorchScript safety check
    max_graph_nodes: int
    scratch: Path | None = None  # the one directory the worker may write; its pool makes one per process
    precision: str = "auto"  # auto | fp32 | bf16 (see sidecar.workers.precision)
    cpu_flags: frozenset[str] = frozenset()  # the CPU's reduced-precision flags, as the node found them


# Messages on the worker's pipe (pickled tuples):
#   node -> worker: ("infer", batch_id, [(text, options), ...])      ("stop",)
#   worker -> node: ("ready", {"batching": bool, "confinement": str, "precision": {precision, how, reason, ...}})
#                   ("failed", status, reason)
#                   ("done", batch_id, [bytes | (status, type, reason), ...], elapsed_ms)
INFER, STOP, READY, FAILED, DONE = "infer", "stop", "ready", "failed", "done"

PRECISIONS = ("auto", "fp32", "bf16")  # what a node or a deployment may ask for
