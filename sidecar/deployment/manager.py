"""This node's side of every deployment: the store says what is deployed, this node makes it so locally.

`_start` on any node writes a deployment to the store; every node plans where its allocations go (the planner), runs
its own share in a local worker pool and writes its own routing entry (`starting` -> `started` | `failed`). `_stop`
marks it stopping; nodes stop their pools and remove their entries, failed ones too. The same loop brings
deployments back after a restart, and removes a deployment whose model is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.cluster.node import Node
from sidecar.deployment.cache import InferenceCache
from sidecar.deployment.params import byte_count
from sidecar.deployment.planner import plan_allocations
from sidecar.deployment.states import RoutingState
from sidecar.deployment.threads import ThreadPlan, allocation_plan, plan
from sidecar.errors import EsError, status_exception
from sidecar.logs import event
from sidecar.metrics import NodeMetrics
from sidecar.models.definition import write_definition
from sidecar.settings import Settings
from sidecar.store.base import Store
from sidecar.workers.hardware import cpu_flags
from sidecar.workers.pool import WorkerPool
from sidecar.workers.spec import WorkerSpec

log = logging.getLogger(__name__)
CACHE = "8.4.0"  # `cache_size` and the native process's inference cache (TransportVersions.V_8_4_0 in AssignmentStats)
STARTING, STARTED, STOPPING, FAILED = (RoutingState.STARTING, RoutingState.STARTED, RoutingState.STOPPING, RoutingState.FAILED)


@dataclass
class LocalDeployment:
    """A deployment's worker pool on this node, with what it actually runs."""

    pool: WorkerPool
    config: dict[str, Any]  # the model config, so inference never reads the store
    inference_threads: int
    model_threads: int
    start_time: int  # epoch millis
    allocations: int  # this node's share of the plan that the pool was started for
    reason: str  # what its routing entry says: why threads were lowered, if they were
    cache: InferenceCache  # results already inferred here, kept when the pool is replaced for another share


class Deployments:
    def __init__(self, store: Store, node: Node, settings: Settings, metrics: NodeMetrics) -> None:
        self.store = store
        self.node = node
        self.settings = settings
        self.metrics = metrics
        self.local: dict[str, LocalDeployment] = {}
        self._starting: dict[str, asyncio.Task[None]] = {}
        self._failed: set[tuple[str, int]] = set()  # (model_id, deployment start_time) that failed here
        # this node's share of each deployment it runs, starts or failed to start, published with its heartbeat:
        # what the others plan from (Elasticsearch's routing entries keep a failed node's allocations too)
        self.allocations: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._closing = False
        # as of the last reconcile, for routing infers without a store read per request:
        self.live: list[dict[str, Any]] = []  # live nodes
        self.serving: dict[str, list[str]] = {}  # model id -> ids of nodes whose allocation is started
        self.store_problem: str | None = None  # why the loop's last pass failed (the store, mostly), while it fails

    # the loop -----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Reconcile and heartbeat until closed; a failing pass is one warning line until one succeeds, never fatal."""
        while not self._closing:
            try:
                await self.heartbeat()
                await self.reconcile(fresh=False)
            except Exception as exc:
                self._pass_failed(exc)
            else:
                if self.store_problem is not None:
                    log.info("reconcile works again", extra=event("reconcile-recovered"))
                self.store_problem = None
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.heartbeat_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()

    def _pass_failed(self, exc: Exception) -> None:
        """A store that cannot be reached is expected now and then: its traceback only at debug level."""
        if self.store_problem is None:
            log.warning(
                "reconcile failed: %s: %s; retrying every heartbeat",
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
                extra=event("reconcile-failed", "failure"),
            )
        self.store_problem = f"{type(exc).__name__}: {exc}"

    def wake(self) -> None:
        self._wake.set()

    async def heartbeat(self) -> None:
        doc = {
            "id": self.node.id,
            "name": self.node.name,
            "ephemeral_id": self.node.ephemeral_id,
            "url": self.node.url,
            "cores": len(self.node.cores),
            "allocations": dict(self.allocations),
            "deployments": {model_id: self.local_stats(model_id) for model_id in self.local},
        }
        await asyncio.to_thread(self.store.heartbeat, doc)

    async def reconcile(self, fresh: bool = True) -> None:
        """`fresh=False` (the loop's pass every heartbeat) reads what the store last made visible: with
        `--store elasticsearch` the cluster's own refresh each second, rather than a refresh per node per pass."""
        stored = await self.refresh_view(fresh)
        for model_id in await asyncio.to_thread(self._orphans, stored):
            log.warning("deployment [%s] outlived its model; stopping and removing it", model_id)
            await asyncio.to_thread(self.store.delete_deployment, model_id)
            del stored[model_id]
            self.serving.pop(model_id, None)
        shares = self.plan(stored.values(), self.live)
        for model_id, deployment in stored.items():
            if model_id in self._starting:
                continue  # when it is up, it wakes the loop, which looks again
            if model_id in self.local:  # a `_clear` on any node changes the epoch
                self.local[model_id].cache.follow(deployment.get("cache_epoch"))
            share = shares.get(model_id, {}).get(self.node.id, 0)
            if deployment.get("state") == STOPPING or share == 0:
                if model_id in self.local or self.node.id in deployment["routes"]:
                    await self._stop_local(model_id)  # a pool, or the entry of a start that failed here
            elif (model_id, deployment["start_time"]) in self._failed:
                continue
            elif model_id not in self.local or self.local[model_id].allocations != share:
                if model_id not in self.local:  # written before `_start` looks, as Elasticsearch's master writes it
                    await asyncio.to_thread(self.store.put_route, model_id, self.node.id, STARTING, "")
                self.allocations[model_id] = share
                self._starting[model_id] = asyncio.create_task(self._start_local(deployment, share))
            elif self.node.id not in deployment["routes"]:  # removed by a node that thought this one dead
                await asyncio.to_thread(
                    self.store.put_route, model_id, self.node.id, STARTED, self.local[model_id].reason
                )
        for model_id in [m for m in self.local if m not in stored]:
            await self._stop_local(model_id)

    def plan(self, deployments: Iterable[dict[str, Any]], live: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
        """Allocations per deployment per live node, which every node computes alike from the store's view.

        No node owns the plan: each reads the same deployments, live nodes and published shares, so each computes
        the same plan and runs only its own share. Views differ only while a write (a heartbeat, a node's removal)
        is reaching the others, at most a heartbeat interval: then a node may run an allocation too many or too few
        until the next pass, never more threads than its cores, and the plan, fed back as what runs, is its own
        next plan, so the nodes settle on it. This node's own share is read from memory, the freshest there is.
        """
        if all(node["id"] != self.node.id for node in live):  # a store that does not show this node yet
            live = [*live, {"id": self.node.id, "cores": len(self.node.cores)}]
        current: dict[str, dict[str, int]] = {}
        for node in live:
            published = self.allocations if node["id"] == self.node.id else node.get("allocations", {})
            for deployment_id, count in published.items():
                current.setdefault(deployment_id, {})[node["id"]] = count
        wanted = [_Wanted.of(d) for d in deployments if d.get("state") != STOPPING]
        nodes = [_PlanNode(node["id"], node["cores"]) for node in live]
        return plan_allocations(wanted, nodes, current, legacy=not self.settings.claims("8.3.0"))

    def _orphans(self, deployments: dict[str, dict[str, Any]]) -> list[str]:
        """Deployments whose model is gone (runs in a thread).

        The store never lets a deployment outlive its model; this catches what it cannot: a node that died
        between writing a deployment and withdrawing it, or a store written before deletion and deployment were
        serialised.
        """
        return [model_id for model_id in deployments if self.store.get_model(model_id) is None]

    async def close(self) -> None:
        """Stop taking work, finish what is queued, end every worker, then leave the cluster."""
        self._closing = True
        for task in list(self._starting.values()):
            task.cancel()
        await asyncio.gather(*(self._stop_local(m, drain=True) for m in list(self.local)), return_exceptions=True)
        try:
            await asyncio.to_thread(self.store.remove_node, self.node.id)
        except Exception as exc:  # a store that cannot be reached: the others drop this node when its heartbeat stops
            log.warning("could not leave the store: %s: %s", type(exc).__name__, exc, extra=event("leave", "failure"))

    async def serving_now(self, model_id: str) -> list[str]:
        """The nodes serving `model_id` by its routing entries as they are now (a realtime read, no refresh)."""
        routes = await asyncio.to_thread(self.store.routes, model_id)
        self.serving[model_id] = [node for node, route in routes.items() if route["routing_state"] == STARTED]
        return self.serving[model_id]

    async def refresh_view(self, fresh: bool = True) -> dict[str, dict[str, Any]]:
        """Re-read nodes, deployments and routes; forget nodes whose heartbeat stopped.

        Returns every stored deployment by model id, with its routing entries under `routes`.
        """
        horizon = time.time() - self.settings.heartbeat_timeout_s
        nodes = await asyncio.to_thread(self.store.nodes, fresh)
        for stale in (n for n in nodes if n["last_seen"] < horizon and n["id"] != self.node.id):
            log.warning("node [%s] missed its heartbeats; removing it and its routing entries", stale["name"])
            await asyncio.to_thread(self.store.remove_node, stale["id"])
        self.live = [n for n in nodes if n["last_seen"] >= horizon or n["id"] == self.node.id]
        stored = {}
        for deployment in await asyncio.to_thread(self.store.list_deployments, fresh):
            routes = await asyncio.to_thread(self.store.routes, deployment["model_id"])
            stored[deployment["model_id"]] = {**deployment, "routes": routes}
        self.serving = {
            model_id: [node for node, route in deployment["routes"].items() if route["routing_state"] == STARTED]
            for model_id, deployment in stored.items()
            if deployment.get("state") != STOPPING
        }
        return stored

    # lifecycle, as `_start` and `_stop` drive it -----------------------------------------------
    async def create(self, deployment: dict[str, Any]) -> None:
        """Write a new deployment (AlreadyExists if there is one) and start it here at once."""
        await asyncio.to_thread(self.store.create_deployment, deployment)
        await self.reconcile()

    async def allocation(self, model_id: str) -> dict[str, Any] | None:
        """The deployment as stored, with the routing entries of live nodes and what the plan gives each node.

        `allocations` (node id -> what the plan gives it), `running` (node id -> what it runs, as its last
        heartbeat said) and `target_allocations` are what `allocation_status` and `wait_for` count: from 8.3
        allocations against `number_of_allocations`; before, as the seed counts them, nodes against live nodes (an
        8.0 allocation is the model on a node).
        """
        deployment = await asyncio.to_thread(self.store.get_deployment, model_id)
        if deployment is None:
            return None
        live_nodes = await asyncio.to_thread(self.live_nodes)
        live = {n["id"] for n in live_nodes}
        routes = await asyncio.to_thread(self.store.routes, model_id)
        if self.settings.claims("8.3.0"):
            stored = await asyncio.to_thread(self.store.list_deployments)
            allocations = self.plan(stored, live_nodes).get(model_id, {})
            running = {n["id"]: self._running(n, model_id) for n in live_nodes}
            target = _Wanted.of(deployment).number_of_allocations
        else:
            allocations = running = dict.fromkeys(live, 1)
            target = len(live)
        return {
            **deployment,
            "routes": {n: r for n, r in routes.items() if n in live},
            "live_nodes": len(live),
            "allocations": allocations,
            "running": running,
            "target_allocations": target,
        }

    def _running(self, node: dict[str, Any], model_id: str) -> int:
        """The workers a node runs for a deployment: this node's now, another's as of its last heartbeat."""
        if node["id"] == self.node.id:
            return self.local[model_id].model_threads if model_id in self.local else 0
        return node.get("deployments", {}).get(model_id, {}).get("model_threads", 0)

    async def stop(self, model_id: str, timeout_s: float = 30.0) -> None:
        """Mark the deployment stopping, wait (bounded) until no live node runs it, then remove it and its routes.

        A `failed` entry runs nothing, so it is not waited for; it leaves the table with the deployment.
        """
        await asyncio.to_thread(self.store.update_deployment, model_id, {"state": STOPPING})
        await self.reconcile()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            current = await self.allocation(model_id)
            if current is None or all(r["routing_state"] == FAILED for r in current["routes"].values()):
                break
            await asyncio.sleep(0.05)
        await asyncio.to_thread(self.store.delete_deployment, model_id)

    # local pools --------------------------------------------------------------------------------
    async def _start_local(self, deployment: dict[str, Any], share: int) -> None:
        """Start a pool for this node's share; one running for another share is replaced once the new one is up."""
        model_id = deployment["model_id"]
        threads = self._threads(deployment, share)
        try:
            config, specs = await asyncio.to_thread(
                self._worker_specs, model_id, threads.inference_threads, threads.worker_cores,
                deployment["task_parameters"].get("precision") or self.settings.precision,
            )
            pool = WorkerPool(
                specs,
                deployment["task_parameters"]["queue_capacity"],
                self.settings.max_batch_docs,
                metrics=self.metrics.deployment(model_id),
            )
            await pool.start()
        except Exception as exc:  # a start that fails says why in its routing entry, never in a lost task
            if model_id in self.local:
                self._resize_failed(deployment, exc)
            else:
                await self._failed_here(deployment, exc)
            return
        finally:
            self._starting.pop(model_id, None)
        replaced = self.local.get(model_id)
        cache = replaced.cache if replaced is not None else self._cache(deployment)
        self.local[model_id] = LocalDeployment(
            pool, config, threads.inference_threads, threads.model_threads, _now_ms(), share, threads.reason, cache
        )
        if replaced is not None:
            await replaced.pool.stop(drain=True)
        log.info(
            "deployment [%s] started on this node: model_threads [%d], inference_threads [%d]%s",
            model_id,
            threads.model_threads,
            threads.inference_threads,
            f"; {threads.reason}" if threads.reason else "",
            extra=event("deployment-started"),
        )
        await asyncio.to_thread(self.store.put_route, model_id, self.node.id, STARTED, threads.reason)
        self.wake()  # the deployment may have been stopped while it started

    def _cache(self, deployment: dict[str, Any]) -> InferenceCache:
        """`cache_size` bytes from a claimed 8.4, when Elasticsearch's native process got its cache; none before."""
        rep = deployment["task_parameters"].get("cache_size")
        size = byte_count(rep) if rep and self.settings.claims(CACHE) else 0
        series = self.metrics.deployment(deployment["model_id"])
        return InferenceCache(size, deployment.get("cache_epoch"), series.cache_hits, series.cache_misses)

    def _threads(self, deployment: dict[str, Any], share: int) -> ThreadPlan:
        """Before 8.3 the seed's rule lowers what was asked to fit the cores; from 8.3 the plan already fitted it."""
        params = deployment["task_parameters"]
        if self.settings.claims("8.3.0"):
            return allocation_plan(_Wanted.of(deployment).threads_per_allocation, share, list(self.node.cores))
        return plan(params["inference_threads"], params["model_threads"], list(self.node.cores))

    def _resize_failed(self, deployment: dict[str, Any], exc: Exception) -> None:
        """The running pool keeps serving its share, which is again what this node publishes; no retry."""
        model_id = deployment["model_id"]
        log.error(
            "deployment [%s] could not change its allocations on this node: %s: %s", model_id, type(exc).__name__, exc,
            extra=event("deployment-failed", "failure"),
        )  # fmt: skip
        self._failed.add((model_id, deployment["start_time"]))
        self.allocations[model_id] = self.local[model_id].allocations

    async def _failed_here(self, deployment: dict[str, Any], exc: Exception) -> None:
        """Mark this node's entry `failed` with the reason, leaving no assembled definition behind."""
        model_id = deployment["model_id"]
        error = exc if isinstance(exc, EsError) else status_exception(500, f"{type(exc).__name__}: {exc}")
        log.error(
            "deployment [%s] failed to start on this node: %s", model_id, error.reason,
            exc_info=error is not exc, extra=event("deployment-failed", "failure"),
        )  # fmt: skip
        self._failed.add((model_id, deployment["start_time"]))
        self._definition_path(model_id).unlink(missing_ok=True)
        try:
            await asyncio.to_thread(self.store.put_route, model_id, self.node.id, FAILED, error.reason, error.status)
        except Exception:
            log.exception("could not record the failed start of [%s]", model_id)

    def _definition_path(self, model_id: str) -> Path:
        return self.settings.data_dir / "definitions" / f"{model_id}.pt"

    async def _stop_local(self, model_id: str, drain: bool = False) -> None:
        self.allocations.pop(model_id, None)
        local = self.local.pop(model_id, None)
        if local is not None:
            await local.pool.stop(drain=drain)
            log.info("deployment [%s] stopped on this node", model_id, extra=event("deployment-stopped"))
            self._definition_path(model_id).unlink(missing_ok=True)  # its workers are gone: the disk space goes too
        await asyncio.to_thread(self.store.delete_route, model_id, self.node.id)

    def _worker_specs(
        self, model_id: str, threads: int, layout: tuple[tuple[int, ...], ...], precision: str
    ) -> tuple[dict[str, Any], list[WorkerSpec]]:
        """Assemble the definition on local disk and describe each worker (runs in a thread: it does I/O)."""
        config = self.store.get_model(model_id)
        vocabulary = self.store.get_vocabulary(model_id)
        if config is None or vocabulary is None:
            raise status_exception(404, f"Could not find trained model [{model_id}]")
        path = write_definition(self.store.iter_definition(model_id), self._definition_path(model_id))
        task, task_config = next(iter(config["inference_config"].items()))
        return config, [
            WorkerSpec(
                model_id=model_id,
                definition=path,
                task=task,
                task_config=task_config,
                vocabulary=vocabulary,
                cores=cores,
                threads=threads,
                max_batch_tokens=self.settings.max_batch_tokens,
                trusted=model_id in self.settings.trusted_models,
                max_graph_nodes=self.settings.max_graph_nodes,
                precision=precision,
                cpu_flags=cpu_flags() if self.settings.cpu_flags is None else self.settings.cpu_flags,
            )
            for cores in layout
        ]

    # what the API reads -------------------------------------------------------------------------
    def local_stats(self, model_id: str) -> dict[str, Any]:
        """This node's counters for a deployment, in the form other nodes read from the store."""
        local = self.local[model_id]
        stats = local.pool.stats
        cache = local.cache
        return {
            "inference_count": stats.inference_count + cache.hit_count,  # Elasticsearch counts hits as inferences
            "inference_time_ms": stats.inference_time_ms,  # a hit takes no measurable time
            "inference_cache_hit_count": cache.hit_count,
            "inference_cache_hit_count_last_minute": cache.hits_last_minute(),
            "last_access": max(stats.last_access or 0, cache.last_hit_ms or 0) or None,
            "number_of_pending_requests": local.pool.pending,
            "queue_capacity": local.pool.capacity,
            "error_count": stats.error_count,
            "rejected_execution_count": stats.rejected_execution_count,
            "timeout_count": stats.timeout_count,
            "waited_beyond_capacity_count": stats.waited_beyond_capacity_count,
            "start_time": local.start_time,
            "inference_threads": local.inference_threads,
            "model_threads": local.model_threads,
            "batching": local.pool.batching,
            "precision": local.pool.precision,
        }

    def live_nodes(self) -> list[dict[str, Any]]:
        horizon = time.time() - self.settings.heartbeat_timeout_s
        return [n for n in self.store.nodes() if n["last_seen"] >= horizon]


@dataclass(frozen=True)
class _Wanted:
    """What the planner reads of a stored deployment."""

    deployment_id: str
    number_of_allocations: int
    threads_per_allocation: int
    priority: str

    @classmethod
    def of(cls, deployment: dict[str, Any]) -> _Wanted:
        params = deployment["task_parameters"]
        return cls(
            deployment["model_id"],
            params.get("number_of_allocations", params.get("model_threads", 1)),
            params.get("threads_per_allocation", params.get("inference_threads", 1)),
            params.get("priority", "normal"),
        )


@dataclass(frozen=True)
class _PlanNode:
    id: str
    cores: int


def _now_ms() -> int:
    return int(time.time() * 1000)
