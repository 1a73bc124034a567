"""`_start`, `_stop` and `_stats` of trained model deployments."""

from __future__ import annotations

import asyncio
from typing import Any

from sidecar.api.endpoint import Context
from sidecar.api.routes.models import all_models, match_models, model_or_404
from sidecar.api.wire import EsRequest
from sidecar.cluster.node import describe
from sidecar.deployment.start import (
    allocation_state,
    allocation_status,
    new_deployment,
    parse_start,
    render_allocation,
    wait_for_start,
)
from sidecar.elastic.link import with_reason
from sidecar.errors import EsError, model_not_found, status_exception
from sidecar.models.definition import check_whole
from sidecar.models.tokenization.base import check_served
from sidecar.store.base import AlreadyExists, ModelMissing

from sidecar.timevalue import iso_millis

async def start(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    params = parse_start(model_id, request.params, request.object())
    config = await model_or_404(ctx, model_id)
    if config.get("model_type") != "pytorch":
        raise status_exception(
            400, f"model [{model_id}] of type [{config.get('model_type')}] cannot be deployed. Only PyTorch models can be deployed"
        )
    check_served(next(iter(config["inference_config"].values()))["tokenization"])
    model_bytes = check_whole(model_id, await asyncio.to_thread(ctx.store.definition_parts, model_id))
    if await asyncio.to_thread(ctx.store.get_vocabulary, model_id) is None:
        raise EsError(404, "resource_not_found_exception", f"[{model_id}] Could not find vocabulary document [{model_id}_vocabulary] for model ")
    try:
        await ctx.deployments.create(new_deployment(model_id, model_bytes, params))
    except AlreadyExists:
        inner = EsError(400, "resource_already_exists_exception", f"allocation for model with id [{model_id}] already exist")
        raise status_exception(409, f"Cannot start deployment [{model_id}] because it has already been started", inner) from None
    except ModelMissing:  # a DELETE on another node got there first
        raise model_not_found(model_id) from None
    allocation = await wait_for_start(ctx.deployments, model_id, params)
    reason = None
    if ctx.cluster is not None and allocation_state(allocation) == "started":
        # the cluster's ingest pipelines reach the model through an inference endpoint; if they cannot, say why
        reason = await ctx.cluster.deployment_started(model_id, config)
    return with_reason(render_allocation(allocation), reason)


async def stop(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    body = request.object()
    force = request.params.bool("force", bool(body.get("force", False)))
    allow_no_match = request.params.bool("allow_no_match", bool(body.get("allow_no_match", True)))
    request.params.finish()
    models = match_models(await asyncio.to_thread(_stoppable, ctx), model_id, allow_no_match)
    if len(models) > 1:
        raise status_exception(400, "cannot undeploy multiple models at the same time")
    if models and ctx.cluster is not None and not force:  # `force` overrides the cluster's pipeline references
        found = models[0]["model_id"]
        await ctx.cluster.refuse_if_referenced(
            found, f"Cannot stop deployment for model [{found}] as it is referenced by ingest processors; use force to stop the deployment"
        )
    if models and await asyncio.to_thread(ctx.store.get_deployment, models[0]["model_id"]) is not None:
        await ctx.deployments.stop(models[0]["model_id"])
    return {"stopped": True}


def _stoppable(ctx: Context) -> list[dict[str, Any]]:
    """Every model, and any deployment that outlived its model (a node died half way through a `_start`)."""
    models = all_models(ctx)
    known = {m["model_id"] for m in models}
    leftovers = [{"model_id": d["model_id"]} for d in ctx.store.list_deployments() if d["model_id"] not in known]
    return sorted([*models, *leftovers], key=lambda m: m["model_id"])


async def stats(ctx: Context, request: EsRequest) -> Any:
    p = request.params
    expression = request.path_params.get("model_id", "_all")
    allow_no_match = p.bool("allow_no_match", True)
    start, size = p.int("from", 0) or 0, p.int("size", 100) or 100
    human = p.bool("human")
    p.finish()
    models = match_models(await asyncio.to_thread(all_models, ctx), expression, allow_no_match)
    entries = [await _model_stats(ctx, m, human) for m in models[start : start + size]]
    return {"count": len(models), "trained_model_stats": entries}


async def _model_stats(ctx: Context, config: dict[str, Any], human: bool) -> dict[str, Any]:
    model_id = config["model_id"]
    size = 0
    if config.get("model_type") == "pytorch":
        parts = await asyncio.to_thread(ctx.store.definition_parts, model_id)
        size = parts[0].total_definition_length if parts else 0
    entry: dict[str, Any] = {
        "model_id": model_id,
        "model_size_stats": {"model_size_bytes": size, "required_native_memory_bytes": _native_memory(size)},
        "pipeline_count": 0,
    }
    allocation = await ctx.deployments.allocation(model_id)
    if allocation is not None:
        entry["deployment_stats"] = await _deployment_stats(ctx, allocation, human)
    return entry


def _native_memory(model_bytes: int) -> int:
    """Elasticsearch's estimate for a deployment: a fixed process overhead plus twice the model."""
    return 240 * 1024 * 1024 + 2 * model_bytes if model_bytes else 0


async def _deployment_stats(ctx: Context, allocation: dict[str, Any], human: bool) -> dict[str, Any]:
    """AllocationStats' 8.1 shape: task parameters, state, allocation status, then one entry per node."""
    params = allocation["task_parameters"]
    start_ms = allocation["start_time"] // 1000
    out: dict[str, Any] = {
        "model_id": params["model_id"],
        "inference_threads": params["inference_threads"],
        "model_threads": params["model_threads"],
        "queue_capacity": params["queue_capacity"],
        "state": allocation_state(allocation),
        "allocation_status": allocation_status(allocation),
    }
    _time_field(out, "start_time", start_ms, human)
    nodes = {n["id"]: n for n in await asyncio.to_thread(ctx.deployments.live_nodes)}
    out["nodes"] = [
        _node_stats(ctx, nodes[node_id], params["model_id"], route, human)
        for node_id, route in allocation["routes"].items()
        if node_id in nodes
    ]
    return out


def _node_stats(ctx: Context, node: dict[str, Any], model_id: str, route: dict[str, Any], human: bool) -> dict[str, Any]:
    routing: dict[str, Any] = {"routing_state": route["routing_state"]}
    if route["reason"]:
        routing["reason"] = route["reason"]
    entry: dict[str, Any] = {
        "node": describe(node),
        "routing_state": routing,
    }
    local = node["id"] == ctx.node.id and model_id in ctx.deployments.local
    counters = ctx.deployments.local_stats(model_id) if local else node.get("deployments", {}).get(model_id)
    if route["routing_state"] != "started" or counters is None:
        return entry
    entry["inference_count"] = counters["inference_count"]
    if counters["inference_count"] > 0:
        entry["average_inference_time_ms"] = counters["inference_time_ms"] / counters["inference_count"]
    if counters["last_access"] is not None:
        _time_field(entry, "last_access", counters["last_access"], human)
    entry["number_of_pending_requests"] = counters["number_of_pending_requests"]
    for name in ("error_count", "rejected_execution_count", "timeout_count"):
        if counters[name] > 0:
            entry[name] = counters[name]
    _time_field(entry, "start_time", counters["start_time"], human)
    entry["inference_threads"] = counters["inference_threads"]
    entry["model_threads"] = counters["model_threads"]
    return entry


def _time_field(target: dict[str, Any], name: str, millis: int, human: bool) -> None:
    if human:
        target[f"{name}_string"] = iso_millis(millis)
    target[name] = millis
