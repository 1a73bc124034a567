"""The allocation planner: spread, ties, cores, what runs staying put, nodes leaving and joining, low priority,
partial allocation, and the 8.0-8.2 rule. Cases follow TrainedModelAssignmentRebalancerTests where it has one."""

import random
from dataclasses import dataclass

import pytest

from sidecar.deployment.planner import LOW_PRIORITY_SLOTS_PER_NODE, plan_allocations, unplaced_reason


@dataclass(frozen=True)
class D:
    deployment_id: str
    number_of_allocations: int = 1
    threads_per_allocation: int = 1
    priority: str = "normal"


@dataclass(frozen=True)
class N:
    id: str
    cores: int = 2


def total(placed):
    return sum(placed.values())


def test_allocations_spread_over_the_nodes_fewest_first():
    plan = plan_allocations([D("d", 3)], [N("a"), N("b")], {})
    assert plan == {"d": {"a": 2, "b": 1}}


def test_ties_go_to_the_lowest_node_id_whatever_the_order_given():
    nodes = [N("c"), N("a"), N("b")]
    assert plan_allocations([D("d", 1)], nodes, {}) == {"d": {"a": 1}}
    assert plan_allocations([D("d", 2)], nodes, {}) == {"d": {"a": 1, "b": 1}}
    assert plan_allocations([D("d", 4)], nodes, {}) == {"d": {"a": 2, "b": 1, "c": 1}}


def test_the_same_view_gives_the_same_plan_in_any_order():
    deployments = [D("x", 3), D("y", 2, 2), D("z", 1, priority="low")]
    nodes = [N("n1", 4), N("n2", 3), N("n3", 2)]
    current = {"x": {"n2": 1}, "y": {"n1": 1}}
    first = plan_allocations(deployments, nodes, current)
    assert plan_allocations(deployments[::-1], nodes[::-1], dict(reversed(current.items()))) == first


def test_an_allocation_needs_its_threads_free_on_one_node():
    plan = plan_allocations([D("d", 2, threads_per_allocation=2)], [N("a", 3), N("b", 2)], {})
    assert plan == {"d": {"a": 1, "b": 1}}


def test_never_more_threads_than_a_node_has():
    deployments = [D("d", 10, threads_per_allocation=2), D("e", 10)]
    nodes = [N("a", 4), N("b", 3)]
    plan = plan_allocations(deployments, nodes, {})
    for node in nodes:
        used = sum(plan[d.deployment_id].get(node.id, 0) * d.threads_per_allocation for d in deployments)
        assert used <= node.cores


def test_a_deployment_that_does_not_fit_gets_what_fits_and_says_why():
    deployments = [D("d", 5)]
    nodes = [N("a"), N("b")]
    plan = plan_allocations(deployments, nodes, {})
    assert plan == {"d": {"a": 2, "b": 2}}
    assert unplaced_reason(deployments[0], plan, deployments, nodes) == (
        "Could not assign (more) allocations on node [a]. Reason: This node has insufficient allocated processors. "
        "Available processors [2], free processors [0], processors required for each allocation of this model [1]|"
        "Could not assign (more) allocations on node [b]. Reason: This node has insufficient allocated processors. "
        "Available processors [2], free processors [0], processors required for each allocation of this model [1]"
    )


def test_threads_above_every_node_leave_the_deployment_unassigned():
    """TrainedModelAssignmentRebalancerTests: testRebalance_GivenFirstModelToAdd_NotEnoughProcessors."""
    deployments = [D("d", 1, threads_per_allocation=4)]
    nodes = [N("node-1", 3)]
    plan = plan_allocations(deployments, nodes, {})
    assert plan == {"d": {}}
    assert unplaced_reason(deployments[0], plan, deployments, nodes) == (
        "Could not assign (more) allocations on node [node-1]. Reason: This node has insufficient allocated "
        "processors. Available processors [3], free processors [3], processors required for each allocation of this "
        "model [4]"
    )


def test_without_nodes_nothing_is_placed():
    deployments = [D("d", 2)]
    plan = plan_allocations(deployments, [], {})
    assert plan == {"d": {}}
    assert unplaced_reason(deployments[0], plan, deployments, []) == "No ML nodes exist in the cluster"


def test_a_satisfied_deployment_has_no_reason():
    deployments = [D("d", 2)]
    plan = plan_allocations(deployments, [N("a")], {})
    assert unplaced_reason(deployments[0], plan, deployments, [N("a")]) == ""


def test_every_deployment_gets_one_allocation_before_any_gets_two():
    plan = plan_allocations([D("big", 4), D("small", 1)], [N("a")], {})
    assert plan == {"big": {"a": 1}, "small": {"a": 1}}


def test_later_allocations_prefer_the_less_loaded_node():
    plan = plan_allocations([D("a-first", 1), D("b-second", 1)], [N("n1"), N("n2")], {})
    assert plan == {"a-first": {"n1": 1}, "b-second": {"n2": 1}}


def test_what_runs_stays_where_it_runs():
    """A satisfied deployment is left as it is, even where a fresh plan would spread it differently."""
    current = {"d": {"b": 2, "a": 1}}
    assert plan_allocations([D("d", 3)], [N("a"), N("b"), N("c")], current) == {"d": {"a": 1, "b": 2}}


def test_a_node_joining_takes_nothing_from_a_satisfied_deployment():
    current = plan_allocations([D("d", 2)], [N("a"), N("b")], {})
    assert plan_allocations([D("d", 2)], [N("a"), N("b"), N("c")], current) == current


def test_a_node_joining_takes_what_others_could_not_place():
    before = plan_allocations([D("d", 6)], [N("a"), N("b")], {})
    assert before == {"d": {"a": 2, "b": 2}}
    after = plan_allocations([D("d", 6)], [N("a"), N("b"), N("c")], before)
    assert after == {"d": {"a": 2, "b": 2, "c": 2}}


def test_a_node_leaving_hands_its_allocations_to_the_others():
    current = {"d": {"a": 1, "b": 1, "c": 1}}
    assert plan_allocations([D("d", 3)], [N("a"), N("b")], current) == {"d": {"a": 2, "b": 1}}


def test_a_node_leaving_a_full_cluster_leaves_the_deployment_partial():
    current = {"d": {"a": 2, "b": 2}}
    plan = plan_allocations([D("d", 4)], [N("a")], current)
    assert plan == {"d": {"a": 2}}


def test_the_lost_allocations_go_to_the_nodes_with_fewest():
    current = {"d": {"a": 1, "b": 2, "gone": 3}}
    plan = plan_allocations([D("d", 6)], [N("a", 4), N("b", 4)], current)
    assert plan == {"d": {"a": 3, "b": 3}}


def test_above_its_target_a_deployment_sheds_its_smallest_assignment_first():
    """AllocationReducer: the smallest assignment goes whole when it is no more than must go."""
    assert plan_allocations([D("d", 3)], [N("a", 4), N("b", 4)], {"d": {"a": 3, "b": 1}}) == {"d": {"a": 3}}
    assert plan_allocations([D("d", 2)], [N("a", 4), N("b", 4)], {"d": {"a": 3, "b": 2}}) == {"d": {"a": 2}}
    assert plan_allocations([D("d", 3)], [N("a", 4), N("b", 4)], {"d": {"a": 2, "b": 2}}) == {"d": {"a": 2, "b": 1}}


def test_what_runs_is_kept_only_as_far_as_the_cores_allow():
    current = {"d": {"a": 4}}
    assert plan_allocations([D("d", 4)], [N("a", 2), N("b", 2)], current) == {"d": {"a": 2, "b": 2}}


def test_unknown_and_empty_current_entries_are_ignored():
    current = {"gone-deployment": {"a": 2}, "d": {"a": 0}}
    assert plan_allocations([D("d", 1)], [N("a"), N("b")], current) == {"d": {"a": 1}}


def test_low_priority_shares_cores_with_normal_deployments():
    deployments = [D("normal", 2), D("low", 1, priority="low")]
    plan = plan_allocations(deployments, [N("a")], {})
    assert plan == {"normal": {"a": 2}, "low": {"a": 1}}
    assert unplaced_reason(deployments[1], plan, deployments, [N("a")]) == ""


def test_low_priority_deployments_spread_over_the_nodes_by_slots():
    deployments = [D(f"low-{i}", 1, priority="low") for i in range(3)]
    plan = plan_allocations(deployments, [N("a", 1), N("b", 1)], {})
    assert plan == {"low-0": {"a": 1}, "low-1": {"b": 1}, "low-2": {"a": 1}}


def test_low_priority_deployments_are_capped_per_node():
    deployments = [D(f"low-{i:03}", 1, priority="low") for i in range(LOW_PRIORITY_SLOTS_PER_NODE + 1)]
    plan = plan_allocations(deployments, [N("a")], {})
    assert sum(total(placed) for placed in plan.values()) == LOW_PRIORITY_SLOTS_PER_NODE
    assert plan[f"low-{LOW_PRIORITY_SLOTS_PER_NODE:03}"] == {}


def test_low_priority_stays_where_it_runs():
    deployments = [D("low", 1, priority="low")]
    assert plan_allocations(deployments, [N("a"), N("b")], {"low": {"b": 1}}) == {"low": {"b": 1}}


@pytest.mark.parametrize("nodes", [[N("a", 1)], [N("a", 1), N("b", 8), N("c", 2)]])
def test_legacy_puts_the_model_on_every_node_with_its_workers(nodes):
    deployments = [D("d", 3, 2), D("e", 1)]
    plan = plan_allocations(deployments, nodes, {"d": {"gone": 1}}, legacy=True)
    assert plan == {"d": {n.id: 3 for n in nodes}, "e": {n.id: 1 for n in nodes}}


@pytest.mark.parametrize("seed", range(40))
def test_a_plan_respects_cores_and_is_its_own_next_plan(seed):
    """Every node plans from what the others run: a plan fed back as what runs must give itself again, or the
    nodes would never settle."""
    rng = random.Random(seed)
    deployments = [
        D(f"d{i}", rng.randint(1, 5), rng.randint(1, 3), rng.choice(["normal", "normal", "low"])) for i in range(4)
    ]
    nodes = [N(f"n{i}", rng.randint(1, 6)) for i in range(rng.randint(1, 4))]
    current = {d.deployment_id: {n.id: rng.randint(0, 2) for n in nodes if rng.random() < 0.5} for d in deployments}
    plan = plan_allocations(deployments, nodes, current)
    assert plan_allocations(deployments, nodes, plan) == plan
    normal = [d for d in deployments if d.priority == "normal"]
    for node in nodes:
        assert sum(plan[d.deployment_id].get(node.id, 0) * d.threads_per_allocation for d in normal) <= node.cores
    for deployment in deployments:
        assert total(plan[deployment.deployment_id]) <= deployment.number_of_allocations
