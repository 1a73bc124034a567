"""What `_start`, `_stop` and `_stats` do, whatever shape the API answers in: routes parse into these requests,
call the service, and render what it returns."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sidecar.deployment.manager import Deployments
from sidecar.deployment.params import StartParams, new_deployment
from sidecar.deployment.start import allocation_state, wait_for_start
from sidecar.deployment.states import AssignmentState, RoutingState
from sidecar.errors import EsError, model_not_found, not_found, status_exception
from sidecar.models.catalog import all_models, match_models, model_or_404
from sidecar.models.definition import check_whole
from sidecar.models.tokenization.base import check_served
from sidecar.store.base import AlreadyExists, ModelMissing, Store

DEPLOYMENT_IDS = "8.8.0"  # deployment_id, and the refusals that come with it

if TYPE_CHECKING:
    from sidecar.elastic.link import ClusterLink


@dataclass(frozen=True)
class StartRequest:
    model_id: str
    params: StartParams


@dataclass(frozen=True)
class StopRequest:
    model_id: str
    force: bool = False  # stop even if the cluster's ingest pipelines use the model
    allow_no_match: bool = True


@dataclass(frozen=True)
class StatsRequest:
    expression: str = "_all"
    allow_no_match: bool = True
    start: int = 0
    size: int = 100


@dataclass(frozen=True)
class Started:
    allocation: dict[str, Any]  # the deployment with its routing entries, as `wait_for` left it
    reason: str | None  # why the cluster's pipelines cannot reach the model, when they cannot


@dataclass(frozen=True)
class NodeStats:
    node: dict[str, Any]  # the node as it registered
    route: dict[str, Any]  # its routing entry
    counters: dict[str, Any] | None  # its counters for the deployment, while it serves it


@dataclass(frozen=True)
class ModelStats:
    model_id: str
    model_bytes: int
    allocation: dict[str, Any] | None  # the deployment with its routing entries, when deployed
    nodes: list[NodeStats]


class DeploymentService:
    def __init__(self, store: Store, deployments: Deployments, cluster: ClusterLink | None) -> None:
        self.store = store
        self.deployments = deployments
        self.cluster = cluster

    async def start(self, request: StartRequest) -> Started:
        model_id = request.model_id
        deployment_id = request.params.deployment_id or model_id
        if self.deployments.settings.claims(DEPLOYMENT_IDS):
            await self._refuse_deployment_id(deployment_id)
        config = await model_or_404(self.store, model_id)
        if deployment_id != model_id and await asyncio.to_thread(self.store.get_model, deployment_id) is not None:
            raise status_exception(
                400,
                f"Deployment id [{deployment_id}] is the same as an another model which is not the model being "
                "deployed. Deployment id can be the same as the model being deployed but cannot match a different model",
            )
        if config.get("model_type") != "pytorch":
            raise status_exception(
                400,
                f"model [{model_id}] of type [{config.get('model_type')}] cannot be deployed. "
                "Only PyTorch models can be deployed",
            )
        check_served(next(iter(config["inference_config"].values()))["tokenization"])
        model_bytes = check_whole(model_id, await asyncio.to_thread(self.store.definition_parts, model_id))
        if await asyncio.to_thread(self.store.get_vocabulary, model_id) is None:
            raise EsError(
                404,
                "resource_not_found_exception",
                f"[{model_id}] Could not find vocabulary document [{model_id}_vocabulary] for model ",
            )
        try:
            await self.deployments.create(new_deployment(model_id, model_bytes, request.params))
        except AlreadyExists:
            inner = EsError(400, "resource_already_exists_exception", f"allocation for model with id [{model_id}] already exist")
            raise status_exception(409, f"Cannot start deployment [{model_id}] because it has already been started", inner) from None
        except ModelMissing:  # a DELETE on another node got there first
            raise model_not_found(model_id) from None
        allocation = await wait_for_start(self.deployments, model_id, request.params)
        reason = None
        if self.cluster is not None and allocation_state(allocation) == AssignmentState.STARTED:
            # the cluster's ingest pipelines reach the model through an inference endpoint; if they cannot, say why
            reason = await self.cluster.deployment_started(model_id, config)
        return Started(allocation, reason)

    async def _refuse_deployment_id(self, deployment_id: str) -> None:
        """From 8.8 an existing deployment's id is refused before anything else (a 400, not the 409 of a race)."""
        if deployment_id in await asyncio.to_thread(self.deployment_ids):
            raise status_exception(
                400, f"Could not start model deployment because an existing deployment with the same id [{deployment_id}] exist"
            )

    async def refuse_model_id(self, model_id: str) -> None:
        """From 8.8 a new model may not take the id of a current deployment."""
        if self.deployments.settings.claims(DEPLOYMENT_IDS) and model_id in await asyncio.to_thread(self.deployment_ids):
            raise status_exception(400, f"Cannot create model [{model_id}] the id is the same as an current model deployment")

    def deployment_ids(self) -> set[str]:
        """The id of every stored deployment (runs in a thread)."""
        return {d["task_parameters"].get("deployment_id", d["model_id"]) for d in self.store.list_deployments()}

    async def stop(self, request: StopRequest) -> None:
        models = match_models(await asyncio.to_thread(self._stoppable), request.model_id, request.allow_no_match)
        if len(models) > 1:
            raise status_exception(400, "cannot undeploy multiple models at the same time")
        if not models:
            return
        found = models[0]["model_id"]
        if self.cluster is not None and not request.force:  # `force` overrides the cluster's pipeline references
            await self.cluster.refuse_if_referenced(
                found, f"Cannot stop deployment for model [{found}] as it is referenced by ingest processors; use force to stop the deployment"
            )
        if await asyncio.to_thread(self.store.get_deployment, found) is not None:
            await self.deployments.stop(found)

    async def clear_cache(self, deployment_id: str) -> None:
        """Empty the deployment's inference cache on every node that serves it, as Elasticsearch's
        `TransportClearDeploymentCacheAction` does; the id is a deployment's id, never an alias.

        The one store write: a new `cache_epoch` on the deployment, which every node's reconcile pass compares with
        its cache's, so a peer clears within a heartbeat interval; this node clears at once.
        """
        stored = await asyncio.to_thread(self.store.list_deployments)
        ids = {d["task_parameters"].get("deployment_id", d["model_id"]): d for d in stored}
        found = ids.get(deployment_id)
        if found is None:
            raise not_found(f"No known model deployment with id [{deployment_id}]")
        epoch = time.time_ns()
        await asyncio.to_thread(self.store.update_deployment, found["model_id"], {"cache_epoch": epoch})
        local = self.deployments.local.get(found["model_id"])
        if local is not None:
            local.cache.clear(epoch)

    def _stoppable(self) -> list[dict[str, Any]]:
        """Every model, and any deployment that outlived its model (a node died half way through a `_start`)."""
        models = all_models(self.store)
        known = {m["model_id"] for m in models}
        leftovers = [{"model_id": d["model_id"]} for d in self.store.list_deployments() if d["model_id"] not in known]
        return sorted([*models, *leftovers], key=lambda m: m["model_id"])

    async def stats(self, request: StatsRequest) -> tuple[int, list[ModelStats]]:
        """How many models match, and the requested page of them with their deployments."""
        aliases = await asyncio.to_thread(self.store.model_aliases)
        everything = await asyncio.to_thread(all_models, self.store)
        models = match_models(everything, request.expression, request.allow_no_match, aliases)
        page = models[request.start : request.start + request.size]
        return len(models), [await self._model_stats(config) for config in page]

    async def _model_stats(self, config: dict[str, Any]) -> ModelStats:
        model_id = config["model_id"]
        size = 0
        if config.get("model_type") == "pytorch":
            parts = await asyncio.to_thread(self.store.definition_parts, model_id)
            size = parts[0].total_definition_length if parts else 0
        allocation = await self.deployments.allocation(model_id)
        if allocation is None:
            return ModelStats(model_id, size, None, [])
        nodes = {n["id"]: n for n in await asyncio.to_thread(self.deployments.live_nodes)}
        rows = [
            NodeStats(nodes[node_id], route, self._counters(nodes[node_id], model_id, route))
            for node_id, route in allocation["routes"].items()
            if node_id in nodes
        ]
        return ModelStats(model_id, size, allocation, rows)

    def _counters(self, node: dict[str, Any], model_id: str, route: dict[str, Any]) -> dict[str, Any] | None:
        """This node's live counters, another node's as its last heartbeat wrote them; none unless started."""
        if route["routing_state"] != RoutingState.STARTED:
            return None
        if node["id"] == self.deployments.node.id and model_id in self.deployments.local:
            return self.deployments.local_stats(model_id)
        return node.get("deployments", {}).get(model_id)
