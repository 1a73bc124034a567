"""`GET /_sidecar/health`: no credentials, Elasticsearch's colours, 503 only when the node cannot serve what is
deployed, and an unreachable cluster is yellow and one line in the log, not a 503 and a flood of tracebacks."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.deploy import start, uploaded
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.node import NodeProcess

FIELDS = [
    "status",
    "store",
    "cluster",
    "number_of_nodes",
    "late_nodes",
    "number_of_deployments",
    "deployments_serving_here",
    "missing_allocations",
]


def health(node: NodeProcess) -> tuple[int, dict[str, Any]]:
    """Called as a container health check calls it: plain HTTP, no credentials."""
    try:
        with urllib.request.urlopen(f"{node.url}/_sidecar/health", timeout=10) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read())


def health_when(node: NodeProcess, done: Any, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = health(node)
        if done(body) or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


def test_a_lone_node_is_green_before_and_after_a_deployment(tmp_path: Path, traced_classifier: Any) -> None:
    node = NodeProcess(tmp_path / "data").start()
    try:
        status, body = health(node)
        assert status == 200
        assert list(body) == FIELDS
        assert body | {"status": "green", "store": "reachable", "cluster": "not_configured"} == body
        assert (body["number_of_nodes"], body["number_of_deployments"]) == (1, 0)
        start(node.client(), uploaded(node.url, traced_classifier, "health-classifier"))
        status, body = health_when(node, lambda b: b["number_of_deployments"] == 1)
        assert (status, body["status"], body["deployments_serving_here"], body["missing_allocations"]) == (
            200,
            "green",
            1,
            0,
        )
    finally:
        node.stop()


def test_a_node_that_cannot_serve_its_deployment_is_red_and_its_peer_yellow(
    tmp_path: Path, traced_classifier: Any
) -> None:
    store = f"sqlite:{tmp_path / 'shared.db'}"
    legacy = ("--es-version", "8.0.0")  # the seed's rule puts the model on both nodes, so one of them must refuse it
    serving = NodeProcess(tmp_path / "a", "--store", store, *legacy, name="serving").start()
    refusing = NodeProcess(tmp_path / "b", "--store", store, "--max-graph-nodes", "1", *legacy, name="refusing").start()
    try:
        health_when(serving, lambda b: b["number_of_nodes"] == 2)
        start(serving.client(), uploaded(serving.url, traced_classifier, "half-deployed"))
        deadline = time.monotonic() + 120
        while "failed to start on this node" not in refusing.log():
            assert time.monotonic() < deadline, refusing.log()
            time.sleep(0.2)
        status, body = health(refusing)
        assert (status, body["status"], body["number_of_deployments"], body["deployments_serving_here"]) == (
            503,
            "red",
            1,
            0,
        )
        status, body = health_when(serving, lambda b: b["missing_allocations"] == 1)
        assert (status, body["status"], body["deployments_serving_here"]) == (200, "yellow", 1)
    finally:
        refusing.stop()
        serving.stop()
    refusal = [line for line in refusing.log().splitlines() if "failed to start on this node" in line]
    assert len(refusal) == 1 and "Refusing to load model [half-deployed]" in refusal[0]
    assert "Traceback" not in refusing.log()


@pytest.fixture
def secured_node(tmp_path: Path):  # noqa: ANN201
    """A node next to a secured cluster double; the test leaves the `with` block to take the cluster away."""
    double = EsClusterDouble(security=True)
    double.__enter__()
    double.add_user("sidecar-node", "node-password", ["all"])
    args = ("--es-url", double.url, "--es-user", "sidecar-node", "--es-password", "node-password")
    node = NodeProcess(tmp_path / "data", *args).start()
    yield node, double
    node.stop()
    double.__exit__(None, None, None)


def test_no_credentials_are_needed_and_a_lost_cluster_is_yellow_not_503(secured_node: Any) -> None:
    node, double = secured_node
    status, body = health_when(node, lambda b: b["cluster"] == "connected")
    assert (status, body["status"], body["cluster"]) == (200, "green", "connected")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{node.url}/_ml/trained_models", timeout=10)
    assert refused.value.code == 401, "the cluster's security is on for every other route"

    double.__exit__(None, None, None)
    status, body = health_when(node, lambda b: b["cluster"] == "unreachable")
    assert (status, body["status"], body["store"]) == (200, "yellow", "reachable")
    time.sleep(12)  # two more rounds of the link's reconnect loop
    assert health(node)[0] == 200
    log = node.log()
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "cannot be reached" in line]) == 1, log
    assert "node-password" not in orjson.dumps(body).decode()


def test_a_store_that_cannot_be_reached_is_red_yet_the_node_is_not_down(tmp_path: Path) -> None:
    """`--store elasticsearch`: losing the cluster loses the store too; with nothing deployed the node still serves."""
    double = EsClusterDouble()
    double.__enter__()
    node = NodeProcess(tmp_path / "data", "--es-url", double.url, "--store", "elasticsearch").start()
    try:
        status, body = health_when(node, lambda b: b["cluster"] == "connected")
        assert (status, body["status"], body["store"]) == (200, "green", "reachable")
        double.__exit__(None, None, None)
        status, body = health_when(node, lambda b: b["store"] == "unreachable")
        assert (status, body["status"]) == (200, "red")
        status, body = health_when(node, lambda b: b["cluster"] == "unreachable")  # the link's slower loop
        assert (status, body["status"], body["store"]) == (200, "red", "unreachable")
    finally:
        node.stop()
    log = node.log()
    assert "Traceback" not in log
    assert len([line for line in log.splitlines() if "reconcile failed" in line]) == 1, log


def test_a_cluster_that_comes_later_is_one_line_down_and_one_line_back(tmp_path: Path) -> None:
    double = EsClusterDouble()  # its port is taken, nothing answers on it until the `with` block
    url = double.url
    node = NodeProcess(tmp_path / "data", "--es-url", url).start()
    try:
        status, body = health_when(node, lambda b: b["cluster"] == "unreachable")
        assert (status, body["status"]) == (200, "yellow")
        with double:
            status, body = health_when(node, lambda b: b["cluster"] == "connected")
            assert (status, body["status"]) == (200, "green")
    finally:
        node.stop()
    lines = node.log().splitlines()
    down = [i for i, line in enumerate(lines) if "cannot be reached" in line]
    back = [i for i, line in enumerate(lines) if f"Elasticsearch [9.1.5] at [{url}]" in line]
    assert len(down) == 1 and len(back) == 1 and down[0] < back[0], "\n".join(lines)
    assert "Traceback" not in "\n".join(lines)
