"""Allocations over real nodes sharing one store (8.3+): spread, `wait_for` on allocations, a node joining, a node
dying, and a pool that grows when cores free up.

Each node may use the machine's 2 cores; every deployment uses one thread per allocation. The tests run in order on
one cluster, each starting from what the one before left, as a cluster's history goes.
"""

import time

import pytest

from tests.support.deploy import infer, uploaded
from tests.support.node import NodeProcess

HEARTBEAT_TIMEOUT_S = 5  # a node busy starting workers on a shared machine still heartbeats within it


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    root = tmp_path_factory.mktemp("allocations")
    return root, ["--store", f"sqlite:{root / 'shared.db'}", "--heartbeat-timeout", f"{HEARTBEAT_TIMEOUT_S}s"]


@pytest.fixture(scope="module")
def cluster(shared):
    root, args = shared
    nodes = [NodeProcess(root / "n1", *args, name="n1").start(), NodeProcess(root / "n2", *args, name="n2").start()]
    yield nodes  # a test may add a node
    for node in nodes:
        if node.process.poll() is None:
            node.stop()


@pytest.fixture(scope="module")
def models(cluster, traced_classifier):
    return {name: uploaded(cluster[0].url, traced_classifier, name) for name in ("spread", "partial")}


def status(node):
    return node.client().perform_request("GET", "/_sidecar/status").body


def workers(node):
    """Worker process ids per deployment on `node`: one per allocation."""
    return {name: [w["pid"] for w in d["workers"]] for name, d in status(node)["deployments"].items()}


def counts(nodes, deployment):
    return {status(node)["node_id"]: len(workers(node).get(deployment, [])) for node in nodes}


def allocation_status(node, model_id):
    stats = node.client().ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    return stats["deployment_stats"]["allocation_status"]


def full(count, target=None):
    target = count if target is None else target
    state = "fully_allocated" if count == target else "started" if count else "starting"
    return {"allocation_count": count, "target_allocation_count": target, "state": state}


def start(node, model_id, allocations, wait_for="fully_allocated"):
    return node.client().ml.start_trained_model_deployment(
        model_id=model_id, number_of_allocations=allocations, threads_per_allocation=1, wait_for=wait_for, timeout="90s"
    )


def wait_until(condition, timeout=90):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)


def by_id(nodes):
    """The nodes in node id order: the planner breaks ties by node id."""
    return sorted(nodes, key=lambda node: status(node)["node_id"])


def test_allocations_spread_over_the_nodes_fewest_first(cluster, models):
    start(cluster[1], models["spread"], 3)
    first, second = by_id(cluster)
    assert counts(cluster, "spread") == {status(first)["node_id"]: 2, status(second)["node_id"]: 1}
    assert allocation_status(cluster[0], "spread") == full(3)
    for node in cluster:  # either node answers, whichever runs the allocations
        assert len(infer(node.client(), "spread", ["one", "two"])) == 2


def test_wait_for_returns_with_what_fits_once_no_node_is_starting(cluster, models):
    """One core is left (on the node with one allocation of `spread`): two allocations are asked, one fits, and
    `fully_allocated` is answered as Elasticsearch's DeploymentStartedPredicate does, as soon as nobody is starting."""
    first, second = by_id(cluster)
    start(cluster[0], models["partial"], 2)
    assert counts(cluster, "partial") == {status(first)["node_id"]: 0, status(second)["node_id"]: 1}
    assert allocation_status(cluster[1], "partial") == full(1, 2)


def test_a_joining_node_takes_what_could_not_be_placed_and_nothing_else(cluster, shared, models):
    before = {status(node)["node_id"]: workers(node) for node in cluster}
    root, args = shared
    cluster.append(NodeProcess(root / "n3", *args, name="n3").start())
    wait_until(lambda: allocation_status(cluster[0], "partial") == full(2))
    joined = workers(cluster[2])
    assert (len(joined.get("partial", [])), joined.get("spread", [])) == (1, [])
    assert {status(node)["node_id"]: workers(node) for node in cluster[:2]} == before  # the same processes


def test_a_dead_nodes_allocations_move_to_the_others(cluster, models):
    doomed = next(node for node in cluster if len(workers(node).get("spread", [])) == 2)
    survivors = [node for node in cluster if node is not doomed]
    doomed.kill()
    # the survivors each run one `partial` allocation: one core free on each, so one `spread` allocation stays out
    wait_until(lambda: allocation_status(survivors[0], "spread") == full(2, 3))
    assert sorted(counts(survivors, "spread").values()) == [1, 1]
    for node in survivors:
        assert len(infer(node.client(), "spread", ["still served"])) == 1


def test_cores_freed_by_a_stop_go_to_a_deployment_short_of_allocations(cluster, models):
    """Stopping `partial` frees a core on each survivor; `spread` takes one, on the lower node id, whose pool grows
    from one worker to two."""
    survivors = by_id([node for node in cluster if node.process.poll() is None])
    survivors[0].client().ml.stop_trained_model_deployment(model_id="partial")
    wait_until(lambda: allocation_status(survivors[1], "spread") == full(3))
    assert list(counts(survivors, "spread").values()) == [2, 1]
    assert all("partial" not in workers(node) for node in survivors)
