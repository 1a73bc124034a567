"""A worker process: pinned to its cores, it loads one model once and answers batches from its pipe.

Everything here runs in the worker; the node process only imports `worker_main` to name it as the target.
"""

from __future__ import annotations

import os
import socket
import time
from functools import partial
from typing import Any, BinaryIO

from sidecar.errors import EsError
from sidecar.models.safety import UnsafeModelError
from sidecar.workers.confine import confine
from sidecar.workers.channel import receive, send
from sidecar.workers.spec import DONE, FAILED, INFER, READY, WorkerSpec


def worker_main(conn: socket.socket, spec: WorkerSpec) -> None:
    """Pin, set thread counts before torch loads, open the definition, confine the process, load the model, then
    serve until told to stop or the pipe closes."""
    os.sched_setaffinity(0, spec.cores)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(spec.threads)
    try:
        definition = open(spec.definition, "rb")  # noqa: SIM115 - held open for the worker's life
    except OSError as exc:
        send(conn, (FAILED, 500, f"cannot open model definition: {exc.strerror}"))
        return
    assert spec.scratch is not None  # the pool gives every process its own
    os.environ["TMPDIR"] = str(spec.scratch)
    confinement = confine(spec.scratch, definition)
    try:
        runner = _Runner(spec, definition)
    except UnsafeModelError as exc:  # the caller's model is refused: a 400 naming the operation
        send(conn, (FAILED, 400, f"Refusing to load model [{spec.model_id}]: {exc}"))
        return
    except Exception as exc:  # any other load failure is reported, never raised into the node
        status = exc.status if isinstance(exc, EsError) else 500
        send(conn, (FAILED, status, str(exc) or type(exc).__name__))
        return
    ready = {"batching": runner.batching, "confinement": confinement, "precision": runner.precision}
    send(conn, (READY, ready))
    while True:
        try:
            message = receive(conn)
        except (EOFError, OSError):
            return
        if message[0] != INFER:
            return
        _, batch_id, docs = message
        started = time.perf_counter()
        results = runner.infer(docs)
        send(conn, (DONE, batch_id, results, (time.perf_counter() - started) * 1000))


class _Runner:
    """Tokenize, run the model in length-sorted sub-batches, post-process into Elasticsearch JSON.

    The model runs through an engine: the fp32 graph, or the bf16 form the precision probe chose."""

    def __init__(self, spec: WorkerSpec, definition: BinaryIO) -> None:
        import torch

        from sidecar.models.safety import load_checked
        from sidecar.models.tasks import TASKS
        from sidecar.models.tokenization import build_tokenizer
        from sidecar.workers.precision import choose

        torch.set_num_threads(spec.threads)
        torch.set_num_interop_threads(1)
        self._torch = torch
        model = load_checked(definition, spec.max_graph_nodes, trusted=spec.trusted)
        self._tokenizer = build_tokenizer(spec.task_config["tokenization"], spec.vocabulary)
        self.task = TASKS[spec.task](spec.task_config, self._tokenizer)
        self._max_tokens = spec.max_batch_tokens
        self.batching = self._probe_batching(model)
        # the second copy is read from the very file the first was checked from (see load_checked)
        reload = partial(load_checked, definition, trusted=True)
        self._engine, choice = choose(self, model, reload, spec.precision, spec.cpu_flags)
        self.precision = choice.describe()

    def infer(self, docs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Each document's answer as JSON bytes, or its error as (status, type, reason)."""
        import orjson

        return [
            orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY) if isinstance(answer, dict) else answer
            for answer in self.results(docs, self._engine)
        ]

    def results(self, docs: list[tuple[str, dict[str, Any]]], engine: Any) -> list[Any]:
        """Each document's answer through `engine`: a result object, or its error as (status, type, reason)."""
        results: list[Any] = [None] * len(docs)
        prepared: dict[int, Any] = {}
        for i, (text, options) in enumerate(docs):
            try:
                prepared[i] = self.task.preprocess(text, options)
            except EsError as exc:
                results[i] = exc.to_wire()
        rows = [(i, r, window) for i, p in prepared.items() for r, window in enumerate(p.rows)]
        try:
            outputs = self.forward([window for _, _, window in rows], engine)
        except Exception as exc:  # the model itself failed: the batch's documents get Elasticsearch's 500
            error = (500, "status_exception", f"Error in inference process: [{exc}]")
            return [error if i in prepared else result for i, result in enumerate(results)]
        per_doc: dict[int, list[Any]] = {i: [None] * len(p.rows) for i, p in prepared.items()}
        for (i, r, _), output in zip(rows, outputs, strict=True):
            per_doc[i][r] = output
        for i, p in prepared.items():
            try:
                results[i] = self.task.postprocess(p, self._stack(per_doc[i]), docs[i][1])
            except EsError as exc:
                results[i] = exc.to_wire()
        return results

    def forward(self, windows: list[Any], engine: Any) -> list[Any]:
        """Run rows shortest-first in sub-batches whose padded size fits the token budget."""
        order = sorted(range(len(windows)), key=lambda k: len(windows[k].ids))
        outputs: list[Any] = [None] * len(windows)
        start = 0
        while start < len(order):
            end = start + 1
            if self.batching:
                while end < len(order) and (end + 1 - start) * len(windows[order[end]].ids) <= self._max_tokens:
                    end += 1
            chunk = order[start:end]
            for k, row in zip(chunk, self._run([windows[k] for k in chunk], engine), strict=True):
                outputs[k] = _unpad(row, len(windows[k].ids))
            start = end
        return outputs

    def _run(self, windows: list[Any], engine: Any) -> Any:
        torch = self._torch
        inputs = [torch.from_numpy(a) for a in self._tokenizer.model_inputs(windows)]
        with torch.inference_mode():
            output = engine(*inputs)
        if isinstance(output, (tuple, list)):
            output = output[0]
        if output.dim() == 0:
            output = output.reshape(1, 1)
        return self.task.split_rows(output.float().numpy())

    def _stack(self, rows: list[Any]) -> Any:
        """A document's rows as one array; per-token rows of windows differ in length, so zero-pad them."""
        import numpy as np

        longest = max(len(row) for row in rows)
        return np.stack([np.pad(row, [(0, longest - len(row))] + [(0, 0)] * (row.ndim - 1)) for row in rows])

    def _probe_batching(self, model: Any) -> bool:
        """Traced graphs may bake in batch size 1 or ignore padding: compare a padded pair with single rows once."""
        import numpy as np

        rows = [self._tokenizer.tokenize(text, "first", -1)[0] for text in ("hello", "hello world, a longer text")]
        try:
            together = self._run(rows, model)
            alone = [self._run([row], model)[0] for row in rows]
        except Exception:
            return False
        return len(together) == 2 and all(
            np.allclose(_unpad(together[k], len(rows[k].ids)), _unpad(alone[k], len(rows[k].ids)), atol=1e-4)
            for k in range(2)
        )


def _unpad(row: Any, length: int) -> Any:
    """Drop padding positions from a per-token output ([L, ...]); pooled outputs pass through."""
    return row[:length] if row.ndim >= 2 and row.shape[0] >= length else row
