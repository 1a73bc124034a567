"""`_start`, `_stop` and `_stats` of trained model deployments."""

from __future__ import annotations

from typing import Any

from sidecar.api.endpoint import Context
from sidecar.api.wire import EsRequest
from sidecar.cluster.node import describe
from sidecar.deployment.service import ModelStats, NodeStats, StartRequest, StatsRequest, StopRequest
from sidecar.deployment.start import allocation_state, allocation_status, parse_start, render_allocation
from sidecar.elastic.link import with_reason
from sidecar.timevalue import iso_millis


async def start(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    params = parse_start(model_id, request.params, request.object())
    started = await ctx.deployment_service.start(StartRequest(model_id, params))
    return with_reason(render_allocation(started.allocation), started.reason)


async def stop(ctx: Context, request: EsRequest) -> Any:
    body = request.object()
    force = request.params.bool("force", bool(body.get("force", False)))
    allow_no_match = request.params.bool("allow_no_match", bool(body.get("allow_no_match", True)))
    request.params.finish()
    await ctx.deployment_service.stop(StopRequest(request.path_params["model_id"], force, allow_no_match))
    return {"stopped": True}


async def stats(ctx: Context, request: EsRequest) -> Any:
    p = request.params
    expression = request.path_params.get("model_id", "_all")
    allow_no_match = p.bool("allow_no_match", True)
    start, size = p.int("from", 0) or 0, p.int("size", 100) or 100
    human = p.bool("human")
    p.finish()
    count, models = await ctx.deployment_service.stats(StatsRequest(expression, allow_no_match, start, size))
    return {"count": count, "trained_model_stats": [_model_stats(m, human) for m in models]}


def _model_stats(stats: ModelStats, human: bool) -> dict[str, Any]:
    size = stats.model_bytes
    entry: dict[str, Any] = {
        "model_id": stats.model_id,
        "model_size_stats": {"model_size_bytes": size, "required_native_memory_bytes": _native_memory(size)},
        "pipeline_count": 0,
    }
    if stats.allocation is not None:
        entry["deployment_stats"] = _deployment_stats(stats, human)
    return entry


def _native_memory(model_bytes: int) -> int:
    """Elasticsearch's estimate for a deployment: a fixed process overhead plus twice the model."""
    return 240 * 1024 * 1024 + 2 * model_bytes if model_bytes else 0


def _deployment_stats(stats: ModelStats, human: bool) -> dict[str, Any]:
    """AllocationStats' 8.1 shape: task parameters, state, allocation status, then one entry per node."""
    allocation = stats.allocation
    assert allocation is not None
    params = allocation["task_parameters"]
    out: dict[str, Any] = {
        "model_id": params["model_id"],
        "inference_threads": params["inference_threads"],
        "model_threads": params["model_threads"],
        "queue_capacity": params["queue_capacity"],
        "state": allocation_state(allocation),
        "allocation_status": allocation_status(allocation),
    }
    _time_field(out, "start_time", allocation["start_time"] // 1000, human)
    out["nodes"] = [_node_stats(row, human) for row in stats.nodes]
    return out


def _node_stats(row: NodeStats, human: bool) -> dict[str, Any]:
    routing: dict[str, Any] = {"routing_state": row.route["routing_state"]}
    if row.route["reason"]:
        routing["reason"] = row.route["reason"]
    entry: dict[str, Any] = {"node": describe(row.node), "routing_state": routing}
    counters = row.counters
    if counters is None:
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
