"""Where each deployment's allocations run: Elasticsearch's assignment planner, as a deterministic greedy.

Elasticsearch (TrainedModelAssignmentRebalancer, AssignmentPlanner) solves a linear program with randomized
rounding; this greedy gives the same results in the cases that matter, and the same result on every node that
computes it from the same view, which is what lets every node plan for itself:

- what runs stays where it runs: a live node keeps its allocations, so a rebalance moves nothing that need not
  move (a node joining takes no allocations from a satisfied deployment, only what others could not place);
- a deployment above its target sheds allocations from its smallest assignment first (AllocationReducer);
- new allocations go one at a time, one per deployment per round (so every deployment gets one before any gets
  two), to the node with the fewest allocations of that deployment, then the fewest cores in use, then the lowest
  node id, among the nodes with `threads_per_allocation` cores free;
- a deployment that cannot get all its allocations gets what fits (`target_allocations` above
  `current_allocations`), and `unplaced_reason` says why in Elasticsearch's words;
- `low` priority deployments are planned apart, one single-thread allocation each, against a fixed number of
  slots per node rather than its cores: Elasticsearch lets them overcommit and share cores with normal ones.

Only cores are counted. Elasticsearch also fits each model into a node's machine learning memory; a node here runs
the few small models people deploy on one host, and its workers' memory is the host's, so a memory model would
guess more than it knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

LOW_PRIORITY = "low"
LOW_PRIORITY_SLOTS_PER_NODE = 100  # MachineLearning.MAX_LOW_PRIORITY_MODELS_PER_NODE

Plan = dict[str, dict[str, int]]  # deployment id -> node id -> allocations


class Deployment(Protocol):
    """What the planner reads of a deployment."""

    @property
    def deployment_id(self) -> str: ...
    @property
    def number_of_allocations(self) -> int: ...
    @property
    def threads_per_allocation(self) -> int: ...
    @property
    def priority(self) -> str: ...  # normal | low


class Node(Protocol):
    """What the planner reads of a live node: its id and how many cores its workers may use."""

    @property
    def id(self) -> str: ...
    @property
    def cores(self) -> int: ...


def plan_allocations(
    deployments: list[Deployment],
    nodes: list[Node],
    current: dict[str, dict[str, int]],
    *,
    legacy: bool = False,
) -> dict[str, dict[str, int]]:
    """Allocations per deployment per live node; `current` is what runs now (deployment id -> node id -> count).

    `legacy` is the 8.0-8.2 rule (a claimed version before 8.3): the model on every live node, with
    `number_of_allocations` (then `model_threads`) workers on each, whatever else runs there.
    """
    if legacy:
        return {d.deployment_id: {n.id: d.number_of_allocations for n in nodes} for d in deployments}
    normal = [d for d in deployments if d.priority != LOW_PRIORITY]
    low = [d for d in deployments if d.priority == LOW_PRIORITY]
    plan = _place(normal, {n.id: n.cores for n in nodes}, current, lambda d: d.threads_per_allocation)
    plan.update(_place(low, {n.id: LOW_PRIORITY_SLOTS_PER_NODE for n in nodes}, current, lambda d: 1))
    return plan


def unplaced_reason(deployment: Deployment, plan: Plan, deployments: list[Deployment], nodes: list[Node]) -> str:
    """Why `deployment` got fewer allocations than it asked for ("" when it got them all): the assignment's
    `reason`, as TrainedModelAssignmentRebalancer.explainAssignments words it."""
    if sum(plan.get(deployment.deployment_id, {}).values()) >= deployment.number_of_allocations:
        return ""
    if not nodes:
        return "No ML nodes exist in the cluster"
    if deployment.priority == LOW_PRIORITY:
        return ""  # a slot is always free somewhere unless there is no node at all
    used = _cores_in_use(plan, [d for d in deployments if d.priority != LOW_PRIORITY])
    threads = deployment.threads_per_allocation
    return "|".join(
        f"Could not assign (more) allocations on node [{node.id}]. Reason: This node has insufficient allocated "
        f"processors. Available processors [{node.cores}], free processors [{node.cores - used.get(node.id, 0)}], "
        f"processors required for each allocation of this model [{threads}]"
        for node in sorted(nodes, key=lambda n: n.id)
        if node.cores - used.get(node.id, 0) < threads
    )


def _place(
    deployments: Iterable[Deployment],
    capacity: dict[str, int],
    current: Mapping[str, Mapping[str, int]],
    threads_of: Callable[[Deployment], int],
) -> Plan:
    ordered = sorted(deployments, key=lambda d: d.deployment_id)
    free = dict(capacity)
    plan: Plan = {}
    for deployment in ordered:  # what runs stays, as far as the node's cores still allow
        threads = threads_of(deployment)
        kept = {
            node_id: count
            for node_id, count in sorted(current.get(deployment.deployment_id, {}).items())
            if node_id in free and count > 0
        }
        plan[deployment.deployment_id] = placed = {}
        for node_id, count in _reduce(kept, deployment.number_of_allocations).items():
            fits = min(count, free[node_id] // threads)
            if fits > 0:
                placed[node_id] = fits
                free[node_id] -= fits * threads
    wanting = [d for d in ordered if sum(plan[d.deployment_id].values()) < d.number_of_allocations]
    while wanting:  # one new allocation per deployment per round
        still = []
        for deployment in wanting:
            placed, threads = plan[deployment.deployment_id], threads_of(deployment)
            node_id = _emptiest(placed, free, capacity, threads)
            if node_id is None:
                continue
            placed[node_id] = placed.get(node_id, 0) + 1
            free[node_id] -= threads
            if sum(placed.values()) < deployment.number_of_allocations:
                still.append(deployment)
        wanting = still
    return plan


def _reduce(assignments: dict[str, int], target: int) -> dict[str, int]:
    """Down to `target` allocations, as AllocationReducer does in one zone: from the smallest assignment, whole
    when it has one allocation or no more than must go (its memory is freed), otherwise one at a time. Of equal
    assignments the highest node id gives first, the mirror of placing, so that shedding ends where placing would."""
    left = dict(assignments)
    while sum(left.values()) > target:
        node_id, count = min(sorted(left.items(), reverse=True), key=lambda item: item[1])
        if count == 1 or count <= sum(left.values()) - target:
            del left[node_id]
        else:
            left[node_id] = count - 1
    return left


def _emptiest(placed: dict[str, int], free: dict[str, int], capacity: dict[str, int], threads: int) -> str | None:
    """The node with room for one more allocation that holds the fewest of this deployment's, then the least loaded."""
    room = [node_id for node_id in free if free[node_id] >= threads]
    if not room:
        return None
    return min(room, key=lambda node_id: (placed.get(node_id, 0), capacity[node_id] - free[node_id], node_id))


def _cores_in_use(plan: Plan, deployments: list[Deployment]) -> dict[str, int]:
    used: dict[str, int] = {}
    for deployment in deployments:
        for node_id, count in plan.get(deployment.deployment_id, {}).items():
            used[node_id] = used.get(node_id, 0) + count * deployment.threads_per_allocation
    return used
