"""Clusters that cannot take every endpoint: 9.0 has no custom service (hugging_face endpoints for embeddings
instead), a basic license takes none. The node says why in `_start`, in its status and in its log, and keeps
serving the direct APIs."""

import time

import numpy as np
import pytest

from tests.support.deploy import infer, started, uploaded

NO_CUSTOM = (
    "Elasticsearch [9.0.7] has no [custom] inference service (8.19.x, or 9.1 and later): "
    "only text_embedding and text_expansion models get endpoints there, this one is [ner]"
)
BASIC = "inference endpoints need an enterprise or trial license; the cluster's license is [basic]"


@pytest.fixture(scope="module", params=["9.0.7"])
def release(request):
    """9.0: no custom service, and the license check of 8.18 and later."""
    return request.param


@pytest.fixture(scope="module")
def old(cluster):
    if cluster.double is None:
        pytest.skip("sets the license of the recording double")
    return cluster.double


@pytest.fixture(scope="module")
def node(cluster, old, tmp_path_factory):
    process = cluster.node(tmp_path_factory.mktemp("limited") / "data")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node):
    return node.client()


def cluster_status(es):
    return es.perform_request("GET", "/_sidecar/status").body["cluster"]


def test_embeddings_get_a_hugging_face_endpoint_that_validates(old, node, es, traced_dense):
    model_id = uploaded(node.url, traced_dense, "old-dense")
    assert "reason" not in started(es, model_id)
    endpoint = old.state.endpoints[model_id]
    assert (endpoint["service"], endpoint["task_type"]) == ("hugging_face", "text_embedding")
    assert endpoint["service_settings"]["url"] == f"{node.url}/_sidecar/hf/{model_id}"
    [validation] = [v for v in old.state.validations if v["endpoint"] == model_id]
    assert validation["body"] == {"inputs": ["how big"]}
    assert validation["headers"]["Authorization"] == f"Bearer {(node.data_dir / 'callback_secret').read_text()}"
    assert np.allclose(np.linalg.norm(validation["parsed"], axis=1), 1.0, atol=1e-5)


def test_other_tasks_start_and_say_why_ingest_cannot_reach_them(old, node, es, traced_ner):
    model_id = uploaded(node.url, traced_ner, "old-ner")
    allocation = started(es, model_id)
    state = list(allocation)[2]  # allocation_state (8.0-8.2) or assignment_state
    assert state.endswith("_state") and list(allocation)[3] == "reason"
    assert (allocation[state], allocation["reason"]) == ("started", NO_CUSTOM)
    assert cluster_status(es)["endpoints"][model_id] == {
        "inference_id": model_id,
        "service": "hugging_face",
        "reason": NO_CUSTOM,
    }
    assert model_id not in old.state.endpoints
    assert infer(es, model_id, ["john smith lives in london"])  # the direct API still serves it
    assert f"model [{model_id}] cannot be reached from ingest pipelines: {NO_CUSTOM}" in node.log()


def test_a_basic_license_takes_no_endpoints(old, node, es, traced_dense):
    old.state.license_type = "basic"
    deadline = time.monotonic() + 30
    while cluster_status(es).get("license") != "basic":  # the node looks at its cluster every few seconds
        assert time.monotonic() < deadline
        time.sleep(0.2)
    status = cluster_status(es)
    assert (status["state"], status["inference_service"], status["reason"]) == ("connected", None, BASIC)
    for earlier in ("old-dense", "old-ner"):  # their allocations hold the cores a new one needs
        es.ml.stop_trained_model_deployment(model_id=earlier, force=True)
    model_id = uploaded(node.url, traced_dense, "basic-dense")
    assert started(es, model_id)["reason"] == BASIC
    assert not old.calls("PUT", f"/_inference/text_embedding/{model_id}")
    assert f"ingest pipelines cannot reach models on this node: {BASIC}; the direct APIs keep working" in node.log()
