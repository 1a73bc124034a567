"""A node next to a cluster that can take custom endpoints: `_start` registers one the cluster validates by calling
back, restarts keep it, ingest pipelines that use the model hold off `_stop` and `DELETE`, deleting removes it."""

import asyncio
import time

import pytest
from elasticsearch import ApiError

from tests.support.deploy import start, uploaded

REFERENCED_STOP = (
    "Cannot stop deployment for model [{m}] as it is referenced by ingest processors; use force to stop the deployment"
)
REFERENCED_DELETE = (
    "Cannot delete model [{m}] as it is still referenced by ingest processors; use force to delete the model"
)


@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    process = cluster.node(tmp_path_factory.mktemp("registration") / "data")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node):
    return node.client(retry_on_status=(), max_retries=0)


def error_of(call):
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.meta.status, caught.value.body["error"]["type"], caught.value.body["error"]["reason"]


def wait_until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def cluster_status(es):
    return es.perform_request("GET", "/_sidecar/status").body["cluster"]


def test_start_registers_a_custom_endpoint_the_cluster_validated(cluster, node, es, traced_dense):
    model_id = uploaded(node.url, traced_dense, "reg-dense")
    assert "reason" not in start(es, model_id)["allocation"]
    endpoint = cluster.endpoint(model_id)
    assert (endpoint["service"], endpoint["task_type"]) == ("custom", "text_embedding")
    settings = endpoint["service_settings"]
    assert settings["url"].endswith(f"/_sidecar/custom/{model_id}")
    assert (settings["similarity"], settings["dimensions"]) == ("cosine", 32)  # dimensions learned by calling back
    assert settings["headers"] == {"Authorization": "Bearer ${api_key}"}
    status = cluster_status(es)
    assert (status["state"], status["inference_service"]) == ("connected", "custom")
    assert status["endpoints"][model_id] == {
        "inference_id": model_id,
        "task_type": "text_embedding",
        "service": "custom",
        "url": settings["url"],
    }


def test_the_secret_is_kept_in_the_data_dir_and_sent_as_a_secret_parameter(double, node):
    [(_, _, body)] = double.calls("PUT", "/_inference/text_embedding/reg-dense")
    secret = (node.data_dir / "callback_secret").read_text()
    assert body["service_settings"]["secret_parameters"] == {"api_key": secret}
    assert (node.data_dir / "callback_secret").stat().st_mode & 0o777 == 0o600


def test_pipeline_references_hold_off_stop_and_delete_unless_forced(cluster, node, es, traced_ner):
    model_id = uploaded(node.url, traced_ner, "reg-ner")
    start(es, model_id)
    assert cluster.endpoint(model_id)["task_type"] == "completion"
    processor = {"inference": {"model_id": model_id, "input_output": {"input_field": "body", "output_field": "ml.ner"}}}
    cluster.put_pipeline(
        "reg-uses-ner", {"processors": [{"set": {"field": "seen", "value": True, "on_failure": [processor]}}]}
    )
    try:
        stop = lambda: es.ml.stop_trained_model_deployment(model_id=model_id)  # noqa: E731
        assert error_of(stop) == (409, "status_exception", REFERENCED_STOP.format(m=model_id))
        delete = lambda: es.ml.delete_trained_model(model_id=model_id)  # noqa: E731
        assert error_of(delete) == (409, "status_exception", REFERENCED_DELETE.format(m=model_id))
        assert es.ml.stop_trained_model_deployment(model_id=model_id, force=True).body == {"stopped": True}
        assert error_of(delete) == (409, "status_exception", REFERENCED_DELETE.format(m=model_id))
        assert es.ml.delete_trained_model(model_id=model_id, force=True).body == {"acknowledged": True}
    finally:
        cluster.delete_pipeline("reg-uses-ner")
    assert cluster.endpoint(model_id) is None
    assert model_id not in cluster_status(es)["endpoints"]


def test_unreferenced_models_stop_and_delete_as_before(cluster, node, es, traced_dense):
    model_id = uploaded(node.url, traced_dense, "reg-plain")
    start(es, model_id)
    assert es.ml.stop_trained_model_deployment(model_id=model_id).body == {"stopped": True}
    assert es.ml.delete_trained_model(model_id=model_id).body == {"acknowledged": True}
    assert cluster.endpoint(model_id) is None


def test_a_restarted_node_keeps_its_endpoint_and_recreates_a_missing_one(cluster, tmp_path, traced_dense):
    data = tmp_path / "data"
    node = cluster.node(data)
    port = node.port
    model_id = uploaded(node.url, traced_dense, "reg-restored")
    start(node.client(), model_id)
    first = cluster.endpoint(model_id)
    node.stop()
    try:
        node = cluster.node(data, port=port)  # restores the deployment, finds its endpoint in place
        es = node.client()
        wait_until(lambda: model_id in cluster_status(es)["endpoints"])
        assert cluster.endpoint(model_id) == first
        if cluster.double is not None:
            assert len(cluster.double.calls("PUT", f"/_inference/text_embedding/{model_id}")) == 1
        node.stop()
        cluster.delete_endpoint(model_id)
        node = cluster.node(data, port=port)  # restores the deployment, makes the endpoint again
        wait_until(lambda: cluster.endpoint(model_id) is not None)
        assert cluster.endpoint(model_id)["service_settings"]["url"] == first["service_settings"]["url"]
    finally:
        node.client().ml.delete_trained_model(model_id=model_id, force=True)
        node.stop()


def test_a_cluster_that_cannot_call_the_node_back_says_so(double):
    """The PUT fails on the cluster's validation call; the reason carries what failed."""
    from elasticsearch import AsyncElasticsearch

    from sidecar.elastic.probe import ClusterInfo
    from sidecar.elastic.registry import Registry

    async def register():
        async with AsyncElasticsearch(double.url) as client:
            registry = Registry(client, "http://127.0.0.1:9", "secret", 32)
            reason = await registry.register(
                ClusterInfo("9.1.5", "trial", "active", False, "custom", None), "unreachable", "ner", True
            )
            return reason, registry.entries

    reason, entries = asyncio.run(register())
    assert reason.startswith(
        "the cluster refused inference endpoint [unreachable]: Could not complete inference endpoint creation as "
        "validation call to service threw an exception. (Cannot connect to host 127.0.0.1:9"
    )
    assert entries["unreachable"]["reason"] == reason
    assert "unreachable" not in double.state.endpoints
