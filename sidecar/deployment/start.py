"""`_start`'s parameters and its wait: Elasticsearch's names, defaults, validation and wait_for rules."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sidecar.api.params import Params
from sidecar.deployment.manager import Deployments
from sidecar.deployment.states import AllocationStatus, AssignmentState, RoutingState
from sidecar.errors import (
    EsError,
    illegal_argument,
    model_not_found,
    status_exception,
    validation_failed,
)
from sidecar.timevalue import TimeValue, iso_micros, parse_time

WAIT_FOR_ORDER = tuple(AllocationStatus)
_ACTION = "cluster:admin/xpack/ml/trained_models/deployment/start"
# seed name -> accepted aliases (the 8.3+ names)
_INT_PARAMS = {
    "inference_threads": ("inference_threads", "threads_per_allocation"),
    "model_threads": ("model_threads", "number_of_allocations"),
    "queue_capacity": ("queue_capacity",),
}
_MAX_QUEUE = 1_000_000
_POLL_S = 0.05


@dataclass(frozen=True)
class StartParams:
    inference_threads: int = 1
    model_threads: int = 1
    queue_capacity: int = 1024
    timeout: TimeValue = TimeValue(20.0, "20s")
    wait_for: str = AllocationStatus.STARTED


def parse_start(model_id: str, params: Params, body: dict[str, Any]) -> StartParams:
    """Query string and body both count; where both give a value, the query string wins."""
    if "model_id" in body and body["model_id"] != model_id:
        raise status_exception(
            400,
            f"Inconsistent model_id; '{body['model_id']}' specified in the body differs from '{model_id}' "
            "specified as a URL argument",
        )
    known = {alias for aliases in _INT_PARAMS.values() for alias in aliases} | {"timeout", "wait_for", "model_id"}
    unknown = sorted(set(body) - known)
    if unknown:
        raise EsError(400, "x_content_parse_exception", f"[{_ACTION}] unknown field [{unknown[0]}]")
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, aliases in _INT_PARAMS.items():
        for alias in aliases:
            value = params.int(alias)
            if value is None and alias in body:
                value = _body_int(body[alias], alias)
            if value is not None and name not in values:
                values[name], names[name] = value, alias
    timeout = params.str("timeout")
    values["timeout"] = parse_time(timeout if timeout is not None else str(body.get("timeout", "20s")), "timeout")
    wait_for = params.str("wait_for") or body.get("wait_for") or "started"
    params.finish()
    if str(wait_for).lower() not in WAIT_FOR_ORDER:
        raise illegal_argument(
            "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State."
            + str(wait_for).upper()
        )
    values["wait_for"] = str(wait_for).lower()
    _validate(values, names)
    return StartParams(**values)


def _body_int(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    cause = EsError(400, "number_format_exception", f'For input string: "{value}"')
    raise EsError(400, "x_content_parse_exception", f"[{_ACTION}] failed to parse field [{name}]", cause)


def _validate(values: dict[str, Any], names: dict[str, str]) -> None:
    """Elasticsearch's order: model_threads, inference_threads, queue_capacity, then timeout."""
    errors = [
        f"[{names[name]}] must be a positive integer"
        for name in ("model_threads", "inference_threads", "queue_capacity")
        if name in values and values[name] < 1
    ]
    if values.get("queue_capacity", 0) >= _MAX_QUEUE:
        errors.append(f"[queue_capacity] must be less than {_MAX_QUEUE}")
    if values["timeout"].seconds <= 0:
        errors.append("[timeout] must be positive")
    if errors:
        raise validation_failed(errors)


def new_deployment(model_id: str, model_bytes: int, start: StartParams) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "task_parameters": {
            "model_id": model_id,
            "model_bytes": model_bytes,
            "inference_threads": start.inference_threads,
            "model_threads": start.model_threads,
            "queue_capacity": start.queue_capacity,
        },
        "state": AssignmentState.STARTED,
        "start_time": time.time_ns() // 1000,  # microseconds, printed in ISO-8601
    }


def allocation_status(allocation: dict[str, Any]) -> dict[str, Any]:
    """The allocations started nodes run against the target (before 8.3: started nodes against live nodes)."""
    started_nodes = {node for node, route in allocation["routes"].items() if route["routing_state"] == "started"}
    started = sum(count for node, count in allocation["running"].items() if node in started_nodes)
    target = allocation["target_allocations"]
    state = "starting" if started == 0 else "started" if started < target else "fully_allocated"
    return {"allocation_count": started, "target_allocation_count": target, "state": state}


def allocation_state(allocation: dict[str, Any]) -> str:
    """`stopping` is sticky; any started node makes it `started`; otherwise `starting`."""
    if allocation.get("state") == AssignmentState.STOPPING:
        return AssignmentState.STOPPING
    if any(r["routing_state"] == RoutingState.STARTED for r in allocation["routes"].values()):
        return AssignmentState.STARTED
    return AssignmentState.STARTING


def render_allocation(allocation: dict[str, Any]) -> dict[str, Any]:
    """The seed's response body (field order of TrainedModelAllocation)."""
    routing = {node: {"routing_state": r["routing_state"], "reason": r["reason"]} for node, r in allocation["routes"].items()}
    return {
        "allocation": {
            "task_parameters": allocation["task_parameters"],
            "routing_table": routing,
            "allocation_state": allocation_state(allocation),
            "start_time": iso_micros(allocation["start_time"]),
        }
    }


def reached(allocation: dict[str, Any], wait_for: str) -> bool:
    """DeploymentStartedPredicate: the wanted status, or nobody still starting (a partial success)."""
    status = allocation_status(allocation)["state"]
    if WAIT_FOR_ORDER.index(status) >= WAIT_FOR_ORDER.index(wait_for):
        return True
    routes, planned = allocation["routes"], allocation["allocations"]
    return all(node in routes and routes[node]["routing_state"] != "starting" for node in planned)


def failure(model_id: str, allocation: dict[str, Any]) -> EsError | None:
    """Every node failed: one client-side cause on every node (a refused model's 400, a full disk's 429) is answered
    with its own status and reason, anything else with Elasticsearch's 500."""
    routes = allocation["routes"]
    if not routes or any(r["routing_state"] != RoutingState.FAILED for r in routes.values()):
        return None
    statuses = {r["error_status"] for r in routes.values()}
    if len(statuses) == 1 and statuses.issubset({400, 429}):
        return status_exception(statuses.pop(), next(iter(routes.values()))["reason"])
    errors = ", ".join(f"{node}={r['reason']}" for node, r in routes.items())
    return status_exception(500, f"Could not start trained model deployment, the following nodes failed with errors [{{{errors}}}]")


def timed_out(timeout: TimeValue) -> EsError:
    return status_exception(
        408,
        f"Timed out after [{timeout}] waiting for model deployment to start. "
        "Use the trained model stats API to track the state of the deployment.",
    )


async def wait_for_start(deployments: Deployments, model_id: str, start: StartParams) -> dict[str, Any]:
    """Watch the store until `wait_for` holds; every node failing removes the deployment and raises.

    A deployment stopped meanwhile is a 409, whatever its nodes reported as they dropped it (Elasticsearch's
    predicate has no such case: its assignment goes in one cluster-state update); one whose model was deleted
    meanwhile (a racing `DELETE ?force`) is the 404 a `_start` of a missing model gets.
    """
    deadline = time.monotonic() + start.timeout.seconds
    while True:
        allocation = await deployments.allocation(model_id)
        if allocation is None or allocation.get("state") == AssignmentState.STOPPING:
            await _raise_if_model_gone(deployments, model_id)
            raise status_exception(409, f"deployment for model [{model_id}] was stopped while it was starting")
        error = failure(model_id, allocation)
        if error is not None:
            await asyncio.to_thread(deployments.store.delete_deployment, model_id)
            await _raise_if_model_gone(deployments, model_id)
            raise error
        if reached(allocation, start.wait_for):
            return allocation
        if time.monotonic() >= deadline:
            raise timed_out(start.timeout)
        await asyncio.sleep(_POLL_S)


async def _raise_if_model_gone(deployments: Deployments, model_id: str) -> None:
    if await asyncio.to_thread(deployments.store.get_model, model_id) is None:
        raise model_not_found(model_id)
