"""Three real nodes sharing one store: allocation everywhere, forwarding, failure and return, graceful stop.

The store is one SQLite file, and a cluster's indices (`--store elasticsearch`): the Elasticsearch test double of an
8.x and a 9.x release (the slowest suite: two releases, one of each major, whose media types differ), or the real
cluster at SIDECAR_TEST_ES_URL when set (credentials: SIDECAR_TEST_ES_API_KEY, or SIDECAR_TEST_ES_USER and
SIDECAR_TEST_ES_PASSWORD).

Node 1 runs with a graph-node limit too small for any model, so every model is refused there: its routing entry is
`failed` and every infer sent to it is forwarded to the others.
"""

import json
import os
import signal
import threading
import time
import urllib.request
import zipfile

import pytest
from elasticsearch import ApiError

from benchmarks.texts import LONG
from tests.support.deploy import infer, start, uploaded
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.node import NodeProcess

HEARTBEAT_TIMEOUT_S = 3
ES_URL = os.environ.get("SIDECAR_TEST_ES_URL")
ES_API_KEY = os.environ.get("SIDECAR_TEST_ES_API_KEY")
ES_USER, ES_PASSWORD = os.environ.get("SIDECAR_TEST_ES_USER"), os.environ.get("SIDECAR_TEST_ES_PASSWORD", "")
CREDENTIALS = {"api_key": ES_API_KEY} if ES_API_KEY else {"basic_auth": (ES_USER, ES_PASSWORD)} if ES_USER else {}


STORES = ["sqlite", "elasticsearch"] if ES_URL else ["sqlite", "elasticsearch-8.19.6", "elasticsearch-9.1.5"]


def store_arguments(backend, root, double):
    if backend == "sqlite":
        return ["--store", f"sqlite:{root / 'shared.db'}"]
    if double is not None:
        return ["--store", "elasticsearch", "--es-url", double.url]
    credentials = ["--es-api-key", ES_API_KEY] if ES_API_KEY else ["--es-user", ES_USER, "--es-password", ES_PASSWORD] if ES_USER else []
    return ["--store", "elasticsearch", "--es-url", ES_URL, *credentials]


@pytest.fixture(scope="module", params=STORES)
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def double(backend):
    """The Elasticsearch test double the store lives in (None for SQLite or a real cluster)."""
    if not backend.startswith("elasticsearch-"):
        yield None
        return
    with EsClusterDouble(version=backend.removeprefix("elasticsearch-")) as running:
        yield running


@pytest.fixture(scope="module")
def cluster(backend, double, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    shared = [*store_arguments(backend, root, double), "--heartbeat-timeout", f"{HEARTBEAT_TIMEOUT_S}s"]
    shared += ["--es-version", "8.0.0"]  # the seed's rule: the model on every live node
    nodes = [
        NodeProcess(root / "n1", *shared, "--max-graph-nodes", "10", name="n1").start(),
        NodeProcess(root / "n2", *shared, name="n2").start(),
        NodeProcess(root / "n3", *shared, name="n3").start(),
    ]
    yield nodes
    for node in nodes:
        if node.process.poll() is None:
            node.stop()


def client(node):
    return node.client(retry_on_status=(), max_retries=0, **CREDENTIALS)


def node_id(node):
    return client(node).perform_request("GET", "/_sidecar/status").body["node_id"]


def routing(node, model_id):
    stats = client(node).ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    return {next(iter(entry["node"])): entry for entry in stats["deployment_stats"]["nodes"]}


def wait_until(condition, timeout=60, interval=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def deployed(cluster, traced_minilm):
    n1, n2, n3 = cluster
    model_id = uploaded(n2.url, traced_minilm, "cluster-minilm")
    body = start(client(n1), model_id, wait_for="fully_allocated", model_threads=1, queue_capacity=40, timeout="90s")
    return model_id, body


def test_the_nodes_loops_leave_refreshing_to_the_cluster(cluster, double, deployed):
    """Three nodes heartbeat and reconcile every second without a `_refresh`: the store's indices refresh themselves
    each second, and the loop reads what they show."""
    if double is None:
        pytest.skip("counts the requests the Elasticsearch double receives")
    before = len(double.state.requests)
    time.sleep(3)
    recent = [path for _, path, _ in double.state.requests[before:]]
    assert any(path.endswith("/_search") for path in recent)  # the loops did look
    assert [path for path in recent if "_refresh" in path] == []


def test_every_node_shares_the_cluster_uuid(cluster):
    uuids = {client(node).info()["cluster_uuid"] for node in cluster}
    assert len(uuids) == 1


def test_start_allocates_on_every_live_node(cluster, deployed):
    model_id, body = deployed
    table = body["allocation"]["routing_table"]
    ids = [node_id(node) for node in cluster]
    assert sorted(table) == sorted(ids)
    assert table[ids[0]]["routing_state"] == "failed"
    assert "forbidden" in table[ids[0]]["reason"] or "more than [10] nodes" in table[ids[0]]["reason"]
    assert [table[i]["routing_state"] for i in ids[1:]] == ["started", "started"]
    assert body["allocation"]["allocation_state"] == "started"


def test_stats_list_every_node_from_any_node(cluster, deployed):
    model_id, _ = deployed
    for node in cluster:
        stats = client(node).ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]["deployment_stats"]
        assert stats["allocation_status"] == {"allocation_count": 2, "target_allocation_count": 3, "state": "started"}
        assert len(stats["nodes"]) == 3


def test_infer_on_a_node_without_the_model_is_forwarded(cluster, deployed):
    model_id, _ = deployed
    n1, n2, n3 = cluster
    direct = infer(client(n2), model_id, ["forward me please"])
    forwarded = infer(client(n1), model_id, ["forward me please"])
    assert forwarded[0]["predicted_value"] == pytest.approx(direct[0]["predicted_value"], abs=1e-6)


def test_a_full_queue_forwards_before_answering_429(cluster, deployed):
    model_id, _ = deployed
    n1, n2, n3 = cluster
    before = routing(n3, model_id)[node_id(n3)]["inference_count"]
    # n2 has one worker: 32 documents run, the rest wait; 8 + 32 waiting documents fill its queue of 40
    blockers = [threading.Thread(target=infer, args=(client(n2), model_id, [LONG[0]] * size)) for size in (40, 32)]
    for blocker in blockers:
        blocker.start()
        time.sleep(0.3)
    assert len(infer(client(n2), model_id, ["overflow"] * 10)) == 10
    for blocker in blockers:
        blocker.join()
    wait_until(lambda: routing(n3, model_id)[node_id(n3)]["inference_count"] >= before + 10)


def test_a_callback_on_a_node_without_the_model_waits_where_it_runs(cluster, deployed):
    """n1 serves nothing, so its callbacks are forwarded; 41 inputs are more than the queue of 40 of the nodes that
    serve the model, and they wait for a worker there, as they would on a node that serves it, rather than 429."""
    model_id, _ = deployed
    n1 = cluster[0]
    secret = n1.data_dir / "callback_secret"  # a node next to a cluster keeps its generated secret there
    headers = {"Content-Type": "application/json"}
    if secret.exists():
        headers["Authorization"] = f"Bearer {secret.read_text().strip()}"
    body = json.dumps({"input": [f"text {i}" for i in range(41)]}).encode()
    request = urllib.request.Request(f"{n1.url}/_sidecar/custom/{model_id}", body, headers, method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert (response.status, len(json.loads(response.read())["data"])) == (200, 41)


def test_kill_one_node_under_load_then_restart_it(cluster, deployed):
    model_id, _ = deployed
    n1, n2, n3 = cluster
    killed_id = node_id(n3)
    outcomes: list[object] = []
    stop = threading.Event()

    def load(entry):
        es = client(entry)
        while not stop.is_set():
            try:
                outcomes.append(len(infer(es, model_id, ["steady load"])))
            except ApiError as error:
                outcomes.append(error.meta.status)

    workers = [threading.Thread(target=load, args=(node,)) for node in (n1, n1, n2)]
    for worker in workers:
        worker.start()
    time.sleep(1.0)
    n3.kill()
    wait_until(lambda: killed_id not in routing(n2, model_id), timeout=HEARTBEAT_TIMEOUT_S + 5)
    time.sleep(1.0)
    stop.set()
    for worker in workers:
        worker.join()
    failures = [o for o in outcomes if o != 1]
    assert len(outcomes) > 20
    assert failures == [], f"{len(failures)} of {len(outcomes)} requests failed: {failures[:5]}"

    n3.start()
    wait_until(lambda: routing(n2, model_id).get(killed_id, {}).get("routing_state", {}).get("routing_state") == "started", timeout=90)
    assert infer(client(n3), model_id, ["back again"])


def test_graceful_stop_leaves_the_routing_table(cluster, deployed):
    model_id, _ = deployed
    n1, n2, n3 = cluster
    leaving = node_id(n3)
    assert n3.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert leaving not in routing(n2, model_id)
    assert infer(client(n1), model_id, ["still served"])
    n3.start()


def test_stop_on_any_node_stops_it_everywhere(cluster, deployed):
    model_id, _ = deployed
    n1, n2, n3 = cluster
    assert client(n1).perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_stop").body == {"stopped": True}
    for node in cluster:
        wait_until(lambda: model_id not in client(node).perform_request("GET", "/_sidecar/status").body["deployments"])
    assert "deployment_stats" not in client(n2).ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]


def test_every_node_failing_is_elasticsearchs_500_and_nothing_stays(cluster, tmp_path, traced_minilm):
    n1, n2, n3 = cluster
    broken = tmp_path / "broken.pt"
    with zipfile.ZipFile(broken, "w") as archive:  # passes the pre-load scan, then fails to load
        archive.writestr("broken/code/__torch__.py", "this is not TorchScript")
        archive.writestr("broken/data.pkl", b"not a pickle")
    from sidecar.importer.trace import TracedModel

    model_id = uploaded(n2.url, TracedModel("broken-everywhere", broken, traced_minilm.config, traced_minilm.vocabulary))
    with pytest.raises(ApiError) as caught:
        start(client(n2), model_id, timeout="90s")
    assert caught.value.meta.status == 500
    reason = caught.value.body["error"]["reason"]
    assert reason.startswith("Could not start trained model deployment, the following nodes failed with errors [{")
    assert all(node_id(node) in reason for node in cluster)
    assert "deployment_stats" not in client(n1).ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
