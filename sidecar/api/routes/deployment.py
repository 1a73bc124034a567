"""`_start`, `_stop` and `_stats` of trained model deployments, in the shapes of the claimed version: 8.0-8.2 the
seed's (`allocation`, `inference_threads`, `model_threads`), 8.3 on Elasticsearch's assignment (fields added release
by release as below)."""

from __future__ import annotations

from typing import Any

from sidecar.api.endpoint import Context
from sidecar.api.wire import EsRequest, byte_size
from sidecar.cluster.node import describe
from sidecar.deployment.params import byte_count, byte_size_string, parse_start
from sidecar.deployment.service import ModelStats, NodeStats, StartRequest, StatsRequest, StopRequest
from sidecar.deployment.start import allocation_state, allocation_status
from sidecar.elastic.link import with_reason
from sidecar.settings import Settings
from sidecar.timevalue import iso_micros, iso_millis

ASSIGNMENT = "8.3.0"  # `assignment`, `assignment_state`, threads_per_allocation, number_of_allocations (#85503)
ALLOCATIONS = "8.4.0"  # cache_size, current/target allocations per node, max_assigned_allocations
EXCLUDING_CACHE_HITS = "8.5.0"
PRIORITY = "8.6.0"
DEPLOYMENT_ID = "8.8.0"
MEMORY = "8.11.0"  # per_deployment_memory_bytes, per_allocation_memory_bytes (release UNCONFIRMED)
ADAPTIVE = "8.16.0"  # adaptive_allocations (TransportVersions.V_8_16_0 in AssignmentStats)


async def start(ctx: Context, request: EsRequest) -> Any:
    model_id = request.path_params["model_id"]
    params = parse_start(model_id, request.params, request.object(), ctx.settings.claims(ALLOCATIONS))
    started = await ctx.deployment_service.start(StartRequest(model_id, params))
    if not ctx.settings.claims(ASSIGNMENT):
        return with_reason({"allocation": _allocation(started.allocation)}, started.reason)
    return with_reason({"assignment": _assignment(ctx.settings, started.allocation)}, started.reason)


async def stop(ctx: Context, request: EsRequest) -> Any:
    body = request.object()
    force = request.params.bool("force", bool(body.get("force", False)))
    allow_no_match = request.params.bool("allow_no_match", bool(body.get("allow_no_match", True)))
    request.params.finish()
    await ctx.deployment_service.stop(StopRequest(request.path_params["model_id"], force, allow_no_match))
    return {"stopped": True}


async def clear_cache(ctx: Context, request: EsRequest) -> Any:
    request.params.finish()
    await ctx.deployment_service.clear_cache(request.path_params["model_id"])
    return {"cleared": True}


async def stats(ctx: Context, request: EsRequest) -> Any:
    p = request.params
    expression = request.path_params.get("model_id", "_all")
    allow_no_match = p.bool("allow_no_match", True)
    start, size = p.int("from", 0) or 0, p.int("size", 100) or 100
    human = p.bool("human")
    p.finish()
    count, models = await ctx.deployment_service.stats(StatsRequest(expression, allow_no_match, start, size))
    return {"count": count, "trained_model_stats": [_model_stats(ctx.settings, m, human) for m in models]}


# _start ---------------------------------------------------------------------------------------------------
def _allocation(allocation: dict[str, Any]) -> dict[str, Any]:
    """The seed's TrainedModelAllocation: its five task parameters, routing table, state and start time."""
    params = allocation["task_parameters"]
    return {
        "task_parameters": {
            name: params[name] for name in ("model_id", "model_bytes", "inference_threads", "model_threads", "queue_capacity")
        },
        "routing_table": {
            node: {"routing_state": route["routing_state"], "reason": route["reason"]}
            for node, route in allocation["routes"].items()
        },
        "allocation_state": allocation_state(allocation),
        "start_time": iso_micros(allocation["start_time"]),
    }


def _assignment(settings: Settings, allocation: dict[str, Any]) -> dict[str, Any]:
    """TrainedModelAssignment.toXContent: task parameters, routing table, state, reason if any, start time, then the
    most allocations it has had (here: what its nodes hold now) and its adaptive allocations settings."""
    planned = _planned(allocation)
    out: dict[str, Any] = {
        "task_parameters": _task_parameters(settings, allocation["task_parameters"]),
        "routing_table": {node: _routing(settings, route, planned.get(node, 0)) for node, route in allocation["routes"].items()},
        "assignment_state": allocation_state(allocation),
    }
    if allocation.get("reason"):
        out["reason"] = allocation["reason"]
    out["start_time"] = iso_micros(allocation["start_time"])
    if settings.claims(ALLOCATIONS):
        out["max_assigned_allocations"] = sum(planned.get(node, 0) for node in allocation["routes"])
    if settings.claims(ADAPTIVE):
        out["adaptive_allocations"] = allocation["task_parameters"].get("adaptive_allocations")
    return out


def _task_parameters(settings: Settings, params: dict[str, Any]) -> dict[str, Any]:
    """StartTrainedModelDeploymentAction.TaskParams.toXContent, as far as the claimed version has it."""
    out: dict[str, Any] = {"model_id": params["model_id"]}
    if settings.claims(DEPLOYMENT_ID):
        out["deployment_id"] = params.get("deployment_id", params["model_id"])
    out["model_bytes"] = params["model_bytes"]
    out["threads_per_allocation"] = params["inference_threads"]
    out["number_of_allocations"] = params["model_threads"]
    out["queue_capacity"] = params["queue_capacity"]
    if settings.claims(ALLOCATIONS):
        out["cache_size"] = _cache_size(params)
    if settings.claims(PRIORITY):
        out["priority"] = params.get("priority", "normal")
    if settings.claims(MEMORY):  # a PyTorch model's metadata may set them; none here does
        out["per_deployment_memory_bytes"] = 0
        out["per_allocation_memory_bytes"] = 0
    return out


def _routing(settings: Settings, route: dict[str, Any], allocations: int) -> dict[str, Any]:
    """RoutingInfo: a node's allocations (from 8.4), its state and reason (`""` when there is none)."""
    out: dict[str, Any] = {}
    if settings.claims(ALLOCATIONS):
        out["current_allocations"] = allocations
        out["target_allocations"] = allocations
    out["routing_state"] = route["routing_state"]
    out["reason"] = route["reason"]
    return out


def _planned(allocation: dict[str, Any]) -> dict[str, int]:
    """Allocations per node: the plan's where the deployment has one, else the seed's rule (one per routed node)."""
    return allocation.get("allocations") or dict.fromkeys(allocation["routes"], 1)


def _cache_size(params: dict[str, Any]) -> str:
    return params.get("cache_size") or byte_size_string(params["model_bytes"])


# _stats ---------------------------------------------------------------------------------------------------------
def _model_stats(settings: Settings, stats: ModelStats, human: bool) -> dict[str, Any]:
    size = stats.model_bytes
    entry: dict[str, Any] = {
        "model_id": stats.model_id,
        "model_size_stats": {"model_size_bytes": size, "required_native_memory_bytes": _native_memory(size)},
        "pipeline_count": 0,
    }
    if stats.allocation is not None:
        current = settings.claims(ASSIGNMENT)
        entry["deployment_stats"] = (_assignment_stats if current else _deployment_stats)(settings, stats, human)
    return entry


def _native_memory(model_bytes: int) -> int:
    """Elasticsearch's estimate for a deployment: a fixed process overhead plus twice the model."""
    return 240 * 1024 * 1024 + 2 * model_bytes if model_bytes else 0


def _deployment_stats(settings: Settings, stats: ModelStats, human: bool) -> dict[str, Any]:
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
    entry: dict[str, Any] = {"node": describe(row.node), "routing_state": _routing_state(row.route)}
    counters = row.counters
    if counters is None:
        return entry
    entry["inference_count"] = counters["inference_count"]
    if counters["inference_count"] > 0:
        entry["average_inference_time_ms"] = counters["inference_time_ms"] / counters["inference_count"]
    if counters["last_access"] is not None:
        _time_field(entry, "last_access", counters["last_access"], human)
    entry["number_of_pending_requests"] = counters["number_of_pending_requests"]
    _positive_counts(entry, counters)
    _time_field(entry, "start_time", counters["start_time"], human)
    entry["inference_threads"] = counters["inference_threads"]
    entry["model_threads"] = counters["model_threads"]
    _precision(entry, counters)
    return entry


def _assignment_stats(settings: Settings, stats: ModelStats, human: bool) -> dict[str, Any]:
    """AssignmentStats.toXContent (8.3+): the deployment's parameters, state, allocation status, cache and priority,
    the start time, sums over the nodes (counts only when above 0), peak throughput, then one entry per node."""
    allocation = stats.allocation
    assert allocation is not None
    params = allocation["task_parameters"]
    out: dict[str, Any] = {}
    if settings.claims(DEPLOYMENT_ID):
        out["deployment_id"] = params.get("deployment_id", params["model_id"])
    out["model_id"] = params["model_id"]
    out["threads_per_allocation"] = params["inference_threads"]
    out["number_of_allocations"] = params["model_threads"]
    if settings.claims(ADAPTIVE) and params.get("adaptive_allocations") is not None:
        out["adaptive_allocations"] = params["adaptive_allocations"]
    out["queue_capacity"] = params["queue_capacity"]
    out["state"] = allocation_state(allocation)
    if allocation.get("reason"):
        out["reason"] = allocation["reason"]
    out["allocation_status"] = allocation_status(allocation)
    if settings.claims(ALLOCATIONS):
        out["cache_size"] = _cache_size_value(_cache_size(params))
    if settings.claims(PRIORITY):
        out["priority"] = params.get("priority", "normal")
    _time_field(out, "start_time", allocation["start_time"] // 1000, human)
    counters = [row.counters for row in stats.nodes if row.counters is not None]
    for name in ("error_count", "rejected_execution_count", "timeout_count", "inference_count"):
        total = sum(c[name] for c in counters)
        if total > 0:
            out[name] = total
    out["peak_throughput_per_minute"] = sum(c.get("peak_throughput_per_minute", 0) for c in counters)
    planned = _planned(allocation)
    out["nodes"] = [_assignment_node_stats(settings, row, planned.get(row.node["id"], 0), human) for row in stats.nodes]
    return out


def _assignment_node_stats(settings: Settings, row: NodeStats, allocations: int, human: bool) -> dict[str, Any]:
    """AssignmentStats.NodeStats.toXContent: every counter from the start, the error counts only when above 0."""
    entry: dict[str, Any] = {"node": describe(row.node), "routing_state": _routing_state(row.route)}
    counters = row.counters
    if counters is not None:
        count = counters["inference_count"]
        entry["inference_count"] = count
        hits = counters.get("inference_cache_hit_count", 0)
        if count > 0:  # a hit counts as an inference that took no measurable time
            entry["average_inference_time_ms"] = counters["inference_time_ms"] / count
            if settings.claims(EXCLUDING_CACHE_HITS):
                excluding = counters["inference_time_ms"] / max(count - hits, 1)
                entry["average_inference_time_ms_excluding_cache_hits"] = excluding
        if settings.claims(ALLOCATIONS):
            entry["inference_cache_hit_count"] = hits
        if counters["last_access"] is not None:
            _time_field(entry, "last_access", counters["last_access"], human)
        entry["number_of_pending_requests"] = counters["number_of_pending_requests"]
        _positive_counts(entry, counters)
        _time_field(entry, "start_time", counters["start_time"], human)
        entry["threads_per_allocation"] = counters["inference_threads"]
        entry["number_of_allocations"] = allocations if settings.claims(ALLOCATIONS) else counters["model_threads"]
    entry["peak_throughput_per_minute"] = (counters or {}).get("peak_throughput_per_minute", 0)
    entry["throughput_last_minute"] = (counters or {}).get("throughput_last_minute", 0)
    if counters is not None and counters.get("average_inference_time_ms_last_minute") is not None:
        entry["average_inference_time_ms_last_minute"] = counters["average_inference_time_ms_last_minute"]
    if counters is not None and settings.claims(ALLOCATIONS):
        entry["inference_cache_hit_count_last_minute"] = counters.get("inference_cache_hit_count_last_minute", 0)
    _precision(entry, counters or {})
    return entry


def _precision(entry: dict[str, Any], counters: dict[str, Any]) -> None:
    """The node's extension, last in its entry: the precision its workers chose and why (absent from older nodes)."""
    if counters.get("precision") is not None:
        entry["precision"] = counters["precision"]


def _cache_size_value(rep: str) -> str:
    """AssignmentStats writes the ByteSizeValue itself (its toString(), `1.5kb`), not the text it was given."""
    return byte_size(byte_count(rep))


def _routing_state(route: dict[str, Any]) -> dict[str, Any]:
    routing: dict[str, Any] = {"routing_state": route["routing_state"]}
    if route["reason"]:
        routing["reason"] = route["reason"]
    return routing


def _positive_counts(entry: dict[str, Any], counters: dict[str, Any]) -> None:
    for name in ("error_count", "rejected_execution_count", "timeout_count"):
        if counters[name] > 0:
            entry[name] = counters[name]


def _time_field(target: dict[str, Any], name: str, millis: int, human: bool) -> None:
    if human:
        target[f"{name}_string"] = iso_millis(millis)
    target[name] = millis
