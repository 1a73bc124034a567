"""(a) The ceiling: the same TorchScript in N pinned single-thread processes, tokenizing and running batches in process."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

BATCH = 32


def _run(core: int, definition: str, tokenization: dict[str, Any], vocabulary: dict[str, Any], texts: list[str], seconds: float, out: Any) -> None:
    os.sched_setaffinity(0, {core})
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from sidecar.models.tokenization import build_tokenizer

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    model = torch.jit.load(definition, map_location="cpu").eval()
    tokenizer = build_tokenizer(tokenization, vocabulary)
    batch = [texts[i % len(texts)] for i in range(BATCH)]

    def step() -> None:
        rows = [tokenizer.tokenize(text, "first", -1)[0] for text in batch]
        with torch.inference_mode():
            model(*(torch.from_numpy(a) for a in tokenizer.model_inputs(rows)))

    for _ in range(3):
        step()
    docs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        docs += BATCH
    out.put(docs / (time.perf_counter() - start))


def ceiling(definition: Path, config: dict[str, Any], vocabulary: dict[str, Any], texts: list[str], cores: list[int], seconds: float) -> float:
    """Docs/s of the whole machine: one pinned single-thread process per core, all at once."""
    tokenization = next(iter(config["inference_config"].values()))["tokenization"]
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    processes = [
        context.Process(target=_run, args=(core, str(definition), tokenization, vocabulary, texts, seconds, out))
        for core in cores
    ]
    for process in processes:
        process.start()
    rates = [out.get() for _ in processes]
    for process in processes:
        process.join()
    return sum(rates)
