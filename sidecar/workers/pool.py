"""Worker processes of one deployment on this node: spawn, pin, dispatch batches, restart the dead."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from itertools import count
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from sidecar.errors import EsError, status_exception
from sidecar.logs import event
from sidecar.metrics import DeploymentMetrics, NodeMetrics
from sidecar.timevalue import TimeValue
from sidecar.workers.channel import frame, read
from sidecar.workers.process import worker_main
from sidecar.workers.queue import BoundedQueue, Item
from sidecar.workers.spec import DONE, FAILED, INFER, READY, STOP, WorkerSpec

log = logging.getLogger(__name__)
_SPAWN = multiprocessing.get_context("spawn")  # never fork: the node must stay free of torch state
_STOP_GRACE_S = 5.0
_MAX_RESPAWN_DELAY_S = 30.0


class QueueFull(EsError):
    def __init__(self) -> None:
        super().__init__(429, "es_rejected_execution_exception", "inference process queue is full. Unable to execute command")


@dataclass
class Stats:
    """Counters behind `_stats`' per-node entry."""

    inference_count: int = 0
    inference_time_ms: float = 0.0
    last_access: int | None = None  # epoch millis
    error_count: int = 0
    rejected_execution_count: int = 0
    timeout_count: int = 0
    waited_beyond_capacity_count: int = 0  # requests queued past queue_capacity because their caller waits


@dataclass(eq=False)
class _Worker:
    index: int
    spec: WorkerSpec
    process: BaseProcess
    ready: asyncio.Future[dict[str, Any]]
    writer: asyncio.StreamWriter | None = None
    reader_task: asyncio.Task[None] | None = None
    batch: list[Item] = field(default_factory=list)
    batch_id: int = -1
    failed_loads: int = 0  # replacements in a row that died before loading: the next one waits longer
    scratch: Path | None = None  # the process's own writable directory, removed when it has exited
    alive: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def idle(self) -> bool:
        return self.alive and self.ready.done() and not self.ready.exception() and not self.batch


class WorkerPool:
    """`model_threads` pinned processes fed from one bounded queue, one batch per free worker."""

    def __init__(
        self,
        specs: list[WorkerSpec],
        queue_capacity: int,
        max_batch_docs: int,
        target: Callable[..., None] = worker_main,
        metrics: DeploymentMetrics | None = None,
    ) -> None:
        """`target` is the worker processes' main function (the pool's tests give one that misbehaves on purpose);
        `metrics` are the node's series for the deployment (a pool on its own counts into a registry of its own)."""
        self._specs = specs
        self._metrics = metrics or NodeMetrics().deployment(specs[0].model_id)
        self._target = target
        self._queue = BoundedQueue(queue_capacity)
        self._max_batch_docs = max_batch_docs
        self._max_batch_tokens = specs[0].max_batch_tokens
        self._workers: list[_Worker] = []
        self._batch_ids = count()
        self._closing = False
        self._running = False  # every worker loaded once: from now on a dead worker is replaced
        self.stats = Stats()
        self.batching: bool | None = None

    # lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn every worker and wait until each has loaded the model; raise EsError if one cannot."""
        self._workers = [self._spawn(i, spec) for i, spec in enumerate(self._specs)]
        results = await asyncio.gather(*(w.ready for w in self._workers), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            await self.stop()
            raise failure if isinstance(failure, EsError) else status_exception(500, str(failure))
        self.batching = all(w.info.get("batching") for w in self._workers)
        self._running = True

    async def stop(self, drain: bool = False) -> None:
        """End the workers; with `drain`, queued and running work is finished first, else it is answered 409."""
        self._closing = True
        if drain:
            while self._queue and any(not w.process.exitcode for w in self._workers):
                await asyncio.sleep(0.01)
            while any(w.batch for w in self._workers):
                await asyncio.sleep(0.01)
        for item in self._queue.drain():
            _fail(item, status_exception(409, f"[{self._specs[0].model_id}] is stopping or stopped"))
        for worker in self._workers:
            self._close(worker)
        deadline = time.monotonic() + _STOP_GRACE_S
        for worker in self._workers:
            while worker.process.is_alive() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if worker.process.is_alive():
                worker.process.kill()
        await asyncio.gather(*(w.reader_task for w in self._workers if w.reader_task), return_exceptions=True)

    # requests -----------------------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._queue.capacity

    def has_room(self, docs: int) -> bool:
        return not self._closing and self._queue.has_room(docs)

    @property
    def queued(self) -> int:
        """Documents waiting for a worker."""
        return self._queue.docs

    @property
    def pending(self) -> int:
        return self._queue.docs + sum(i.size for w in self._workers for i in w.batch)

    def submit(
        self, texts: list[str], options: dict[str, Any], timeout: TimeValue, tokens: list[int], wait: bool = False
    ) -> asyncio.Future[list[Any]]:
        """Queue documents at once or reject them; the future resolves to one result per document.

        `wait`: the caller would rather wait than be refused (the cluster's ingest gives a document up after a few
        429s), so it gets in past `queue_capacity` too; what such callers hold is bounded by the node's in-flight
        requests breaker, which counts each request's bytes until it is answered.
        """
        if self._closing or not (wait or self._queue.has_room(len(texts))):
            self.stats.rejected_execution_count += 1
            self._metrics.rejected()
            raise QueueFull()
        if not self._queue.has_room(len(texts)):
            self.stats.waited_beyond_capacity_count += 1
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        deadline = now + timeout.seconds
        parts = []
        for start in range(0, len(texts), self._max_batch_docs):
            chunk = slice(start, start + self._max_batch_docs)
            item = Item(texts[chunk], options, timeout, deadline, loop.create_future(), sum(tokens[chunk]), now)
            self._queue.append(item)
            parts.append(item.future)
        self._dispatch()
        if len(parts) == 1:
            return parts[0]
        return asyncio.ensure_future(_concat(parts))

    def timed_out(self) -> None:
        self.stats.timeout_count += 1
        self._metrics.timed_out()

    # scheduling ---------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._queue:
                return
            if worker.idle:
                self._send(worker)

    def _send(self, worker: _Worker) -> None:
        batch, expired = self._queue.next_batch(self._max_batch_docs, self._max_batch_tokens)
        for item in expired:
            self.timed_out()
            _fail(item, _timeout(item))
        if not batch:
            return
        worker.batch, worker.batch_id = batch, next(self._batch_ids)
        docs = [(text, item.options) for item in batch for text in item.texts]
        now = time.monotonic()
        self._metrics.batch_taken(len(docs), [now - item.queued_at for item in batch])
        assert worker.writer is not None  # set before the worker could report ready
        worker.writer.write(frame((INFER, worker.batch_id, docs)))  # a dead worker's reader hands the batch back

    async def _serve(self, worker: _Worker, sock: socket.socket) -> None:
        """Read the worker's messages until its end of the channel closes, then deal with its exit."""
        reader, worker.writer = await asyncio.open_connection(sock=sock)
        try:
            while True:
                self._on_message(worker, await read(reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            worker.writer.close()
        await asyncio.to_thread(worker.process.join, _STOP_GRACE_S)
        if worker.scratch is not None:
            await asyncio.to_thread(shutil.rmtree, worker.scratch, True)
        self._on_exit(worker)

    def _on_message(self, worker: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == READY:
            worker.info = message[1]
            confinement = worker.info.get("confinement")
            if not str(confinement).startswith("landlock"):
                log.warning("worker %d of [%s] runs unconfined: %s", worker.index, worker.spec.model_id, confinement)
            if not worker.ready.done():
                worker.ready.set_result(message[1])
        elif kind == FAILED:
            if not worker.ready.done():
                worker.ready.set_exception(status_exception(message[1], message[2]))
        elif kind == DONE and message[1] == worker.batch_id:
            self._complete(worker, message[2], message[3])
        self._dispatch()

    def _complete(self, worker: _Worker, results: list[Any], elapsed_ms: float) -> None:
        batch, worker.batch = worker.batch, []
        offset = 0
        for item in batch:
            answers = results[offset : offset + item.size]
            offset += item.size
            error = next((a for a in answers if isinstance(a, tuple)), None)
            if item.abandoned:
                continue
            if error is not None:
                self.stats.error_count += error[0] >= 500
                item.future.set_exception(EsError(*error))
            else:
                item.future.set_result(answers)
        docs = len(results)
        self.stats.inference_count += docs
        self.stats.inference_time_ms += elapsed_ms
        self._metrics.batch_done(docs, elapsed_ms)
        self.stats.last_access = int(time.time() * 1000)

    def _on_exit(self, worker: _Worker) -> None:
        """A worker died: hand its batch back once, fail what already had its retry, start a new worker."""
        worker.alive = False
        code = worker.process.exitcode
        if not worker.ready.done():
            worker.ready.set_exception(status_exception(500, f"worker process exited with code [{code}] while loading"))
        batch, worker.batch = worker.batch, []
        for item in reversed(batch):
            if item.abandoned:
                continue
            if item.retries == 0 and not self._closing:
                self._queue.push_front(replace(item, retries=1))
            else:
                self.stats.error_count += 1
                _fail(item, status_exception(500, f"Error in inference process: [inference process exited with code [{code}]]"))
        if self._closing or not self._running:
            return  # a failed first start is start()'s to report
        self._metrics.worker_died()
        self._dispatch()  # a handed-back batch goes to another live worker at once
        loaded = worker.ready.exception() is None
        delay = 0.0 if loaded else min(_MAX_RESPAWN_DELAY_S, 0.5 * 2**worker.failed_loads)
        log.warning(
            "worker %d of [%s] exited with code %s; starting a new one in %.1fs",
            worker.index, worker.spec.model_id, code, delay, extra=event("worker-exited", "failure"),
        )  # fmt: skip
        asyncio.get_running_loop().call_later(delay, self._replace, worker, 0 if loaded else worker.failed_loads + 1)

    def _replace(self, dead: _Worker, failed_loads: int) -> None:
        if self._closing:
            return
        new = self._spawn(dead.index, dead.spec)
        new.failed_loads = failed_loads
        self._workers[self._workers.index(dead)] = new
        new.ready.add_done_callback(lambda _: self._dispatch())

    def _spawn(self, index: int, spec: WorkerSpec) -> _Worker:
        parent, child = socket.socketpair()
        name = f"sidecar-worker-{spec.model_id}-{index}"
        scratch = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        args = (child, replace(spec, scratch=scratch))
        process = _SPAWN.Process(target=self._target, args=args, name=name, daemon=True)
        process.start()
        child.close()
        worker = _Worker(index, spec, process, asyncio.get_running_loop().create_future(), scratch=scratch)
        worker.ready.add_done_callback(lambda ready: ready.exception())  # a load failure is read where it matters
        worker.reader_task = asyncio.create_task(self._serve(worker, parent))
        return worker

    def _close(self, worker: _Worker) -> None:
        if worker.writer is not None and not worker.writer.is_closing():
            worker.writer.write(frame((STOP,)))
            worker.writer.close()

    # introspection ------------------------------------------------------------------------------
    @property
    def serving_workers(self) -> int:
        """Workers alive with the model loaded: while there is one, the deployment can serve here."""
        return sum(
            w.alive and w.ready.done() and not w.ready.cancelled() and w.ready.exception() is None for w in self._workers
        )

    @property
    def precision(self) -> dict[str, Any] | None:
        """The first worker's precision choice without its measurements (each worker probes for itself)."""
        choice = self._workers[0].info.get("precision") if self._workers else None
        return None if choice is None else {key: choice[key] for key in ("precision", "how", "reason")}

    def describe_workers(self) -> list[dict[str, Any]]:
        """Each worker's process id, cores, confinement (`landlock ...` or `none: why`) and precision choice with
        its measurements, for the status route."""
        return [
            {
                "pid": w.process.pid,
                "cores": list(w.spec.cores),
                "confinement": w.info.get("confinement"),
                "precision": w.info.get("precision"),
            }
            for w in self._workers
        ]


def _fail(item: Item, error: EsError) -> None:
    if not item.future.done():
        item.future.set_exception(error)


def _timeout(item: Item) -> EsError:
    return status_exception(408, f"timeout [{item.timeout}] waiting for inference result")


async def _concat(parts: list[asyncio.Future[list[Any]]]) -> list[Any]:
    results: list[Any] = []
    for part in await asyncio.gather(*parts):
        results.extend(part)
    return results
