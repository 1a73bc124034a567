"""Every state name a deployment, a node's routing entry or `wait_for` can take, as Elasticsearch writes them."""

from __future__ import annotations

from enum import StrEnum


class RoutingState(StrEnum):
    """One node's routing entry (`RoutingState`): `stopped` entries leave the table, so they are rarely seen."""

    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


class AssignmentState(StrEnum):
    """The whole deployment (8.0-8.2 `allocation_state`, 8.3+ `assignment_state`): `failed` is computed from the
    routing entries, never stored, and 8.0-8.2 never show it."""

    STARTING = "starting"
    STARTED = "started"
    STOPPING = "stopping"
    FAILED = "failed"


class AllocationStatus(StrEnum):
    """`allocation_status.state`, which `wait_for` names, in the order `wait_for` compares them."""

    STARTING = "starting"
    STARTED = "started"
    FULLY_ALLOCATED = "fully_allocated"
