"""`_start`'s parameters and its wait: Elasticsearch's names, defaults, validation and wait_for rules."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sidecar.deployment.manager import Deployments
from sidecar.deployment.params import WAIT_FOR_ORDER, StartParams
from sidecar.deployment.states import AssignmentState, RoutingState
from sidecar.errors import EsError, model_not_found, status_exception
from sidecar.timevalue import TimeValue

_POLL_S = 0.05


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
