"""Nodes racing each other through one shared SQLite store: `DELETE ?force` against `_start`, `_stop` past a
`failed` routing entry, and deployments whose model is gone.

Node n3 runs with a graph-node limit too small for any model, so its routing entry for every deployment is `failed`.
"""

import sqlite3
import time

import pytest
from elasticsearch import ApiError

from sidecar.store.sqlite import SqliteStore
from tests.support.concurrency import together
from tests.support.deploy import infer, start, uploaded
from tests.support.node import NodeProcess

# seconds the DELETE waits after the _start was sent: a sweep across the few milliseconds in which both check and
# write the store, then once while the workers load
DELETE_DELAYS_S = (*(step * 0.0002 for step in range(12)), 1.0)
QUICK_S = 15  # a client that gives up well before the 30 s a `_stop` used to wait on a `failed` entry
LOAD_TIMEOUT = "90s"  # a busy machine can take many seconds to load even a tiny model


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("races")
    shared = ["--store", f"sqlite:{root / 'shared.db'}", "--es-version", "8.0.0"]  # the model on every node
    nodes = [
        NodeProcess(root / "n1", *shared, name="n1").start(),
        NodeProcess(root / "n2", *shared, name="n2").start(),
        NodeProcess(root / "n3", *shared, "--max-graph-nodes", "10", name="n3").start(),
    ]
    yield root / "shared.db", nodes
    for node in nodes:
        node.stop()


@pytest.fixture(scope="module")
def store(cluster):
    """The nodes' own store file, read as another node would."""
    db, _ = cluster
    handle = SqliteStore(db)
    yield handle
    handle.close()


def client(node):
    return node.client(retry_on_status=(), max_retries=0)


def quick(node):
    return client(node).options(request_timeout=QUICK_S)


def answer(call):
    """(status, body) of a call, error or not."""
    try:
        return 200, call().body
    except ApiError as error:
        return error.meta.status, error.body


def local_deployments(node):
    return client(node).perform_request("GET", "/_sidecar/status").body["deployments"]


def wait_until(condition, timeout=30, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def orphans(store):
    return [d["model_id"] for d in store.list_deployments() if store.get_model(d["model_id"]) is None]


def assert_gone_everywhere(nodes, model_id):
    """No node runs it, and every node's `_stats` and `_infer` agree that it does not exist."""
    missing = (404, f"Could not find trained model [{model_id}]")
    for node in nodes:
        assert model_id not in local_deployments(node)
        status, body = answer(lambda n=node: client(n).ml.get_trained_models_stats(model_id=model_id))
        assert (status, body["error"]["reason"]) == missing
        status, body = answer(lambda n=node: client(n).ml.infer_trained_model(model_id=model_id, docs=[{"text_field": "x"}]))
        assert (status, body["error"]["reason"]) == missing


def test_delete_force_racing_start_on_another_node_never_leaves_a_deployment_without_its_model(cluster, store, traced_ner):
    _, nodes = cluster
    n1, n2, _ = nodes
    for round_, delay in enumerate(DELETE_DELAYS_S):
        model_id = uploaded(n1.url, traced_ner, f"race-{round_}")

        def delete(model_id=model_id, delay=delay):
            time.sleep(delay)
            return answer(lambda: client(n2).ml.delete_trained_model(model_id=model_id, force=True))

        def start_it(model_id=model_id):
            path = f"/_ml/trained_models/{model_id}/deployment/_start"
            return answer(lambda: client(n1).perform_request("POST", path, params={"timeout": LOAD_TIMEOUT}))

        started, deleted = together(start_it, delete)
        assert started[0] in (200, 404, 409), started
        assert deleted == (200, {"acknowledged": True}), deleted
        assert orphans(store) == []
        assert_gone_everywhere(nodes, model_id)
    assert store.list_deployments() == []


def test_stop_past_a_failed_entry_returns_at_once_and_the_entry_leaves_with_the_deployment(cluster, traced_ner):
    _, nodes = cluster
    n1, n2, n3 = nodes
    model_id = uploaded(n1.url, traced_ner, "failed-entry")
    n3_id = client(n3).perform_request("GET", "/_sidecar/status").body["node_id"]
    table = start(client(n1), model_id, wait_for="fully_allocated", timeout=LOAD_TIMEOUT)["allocation"]["routing_table"]
    assert table[n3_id]["routing_state"] == "failed"

    stopped = quick(n2).perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_stop")
    assert stopped.body == {"stopped": True}
    for node in nodes:
        assert model_id not in local_deployments(node)
        stats = client(node).ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
        assert "deployment_stats" not in stats

    table = start(client(n2), model_id, wait_for="fully_allocated", timeout=LOAD_TIMEOUT)["allocation"]["routing_table"]
    assert table[n3_id]["routing_state"] == "failed"
    deleted = quick(n1).ml.delete_trained_model(model_id=model_id, force=True)
    assert deleted.body == {"acknowledged": True}
    assert_gone_everywhere(nodes, model_id)


def test_a_node_that_finds_a_deployment_without_its_model_stops_and_removes_it(cluster, store, traced_ner):
    db, nodes = cluster
    n1, n2, _ = nodes
    model_id = uploaded(n1.url, traced_ner, "vanishing")
    start(client(n1), model_id, wait_for="fully_allocated", timeout=LOAD_TIMEOUT)
    assert infer(client(n2), model_id, ["served"])
    with sqlite3.connect(db) as raw:  # what a store holds after a node died between deploying and withdrawing
        raw.execute("DELETE FROM models WHERE model_id = ?", (model_id,))
    wait_until(lambda: all(model_id not in local_deployments(node) for node in nodes))
    wait_until(lambda: store.get_deployment(model_id) is None)
    assert_gone_everywhere(nodes, model_id)


def leftover(db, model_id):
    """A deployment row whose model was never stored, as a node that died half way through a `_start` leaves."""
    doc = f'{{"model_id": "{model_id}", "state": "started", "start_time": {time.time_ns() // 1000}}}'
    with sqlite3.connect(db) as raw:
        raw.execute("INSERT INTO deployments VALUES (?, ?)", (model_id, doc))


@pytest.mark.parametrize("how", ["stop", "delete"])
def test_a_deployment_without_its_model_can_be_stopped_or_deleted_through_the_api(cluster, store, how):
    """Nodes remove such a leftover within a heartbeat; a call that comes first removes it itself."""
    db, nodes = cluster
    n1 = nodes[0]
    path = f"/_ml/trained_models/leftover-{how}" + ("/deployment/_stop" if how == "stop" else "?force=true")
    expected = (200, {"stopped": True} if how == "stop" else {"acknowledged": True})
    outcomes = []
    while expected not in outcomes and len(outcomes) < 5:  # a node's reconcile can get there first; go again
        leftover(db, f"leftover-{how}")
        outcomes.append(answer(lambda: client(n1).perform_request("POST" if how == "stop" else "DELETE", path)))
        wait_until(lambda: store.get_deployment(f"leftover-{how}") is None)
    assert expected in outcomes
    assert all(status in (200, 404) for status, _ in outcomes), outcomes
