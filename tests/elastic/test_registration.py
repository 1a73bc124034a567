"""A node next to a cluster of each release: `_start` registers an endpoint the cluster validates by calling back
(`custom` where the release has it, else `hugging_face`), restarts keep it, a node that left has its endpoint taken
over, ingest pipelines and `semantic_text` mappings that use the model hold off `_stop` and `DELETE`, deleting
removes it, and an endpoint someone else made with the model's id is left alone.

Runs against es_release.REPRESENTATIVE (each test starts nodes and deployments).
"""

import asyncio
import time

import pytest
from elasticsearch import ApiError

from tests.elastic.conftest import SOME_RELEASES
from tests.support.deploy import start, started, uploaded

REFERENCED_STOP = (
    "Cannot stop deployment for model [{m}] as it is referenced by ingest processors; use force to stop the deployment"
)
REFERENCED_DELETE = (
    "Cannot delete model [{m}] as it is still referenced by ingest processors; use force to delete the model"
)


@pytest.fixture(scope="module", params=SOME_RELEASES)
def release(request):
    return request.param


@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    process = cluster.node(tmp_path_factory.mktemp("registration") / "data")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node):
    return node.client(retry_on_status=(), max_retries=0)


@pytest.fixture(scope="module")
def service(cluster):
    return "custom" if "custom" in cluster.services else "hugging_face"


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


def route(service):
    return "custom" if service == "custom" else "hf"


def test_start_registers_an_endpoint_the_cluster_validated(cluster, node, es, service, traced_dense):
    model_id = uploaded(node.url, traced_dense, "reg-dense")
    assert "reason" not in started(es, model_id)
    endpoint = cluster.endpoint(model_id)
    assert (endpoint["service"], endpoint["task_type"]) == (service, "text_embedding")
    settings = endpoint["service_settings"]
    assert settings["url"] == f"{node.url}/_sidecar/{route(service)}/{model_id}"
    if service == "custom":
        assert (settings["similarity"], settings["dimensions"]) == ("cosine", 32)  # learned by calling back
        assert settings["headers"] == {"Authorization": "Bearer ${api_key}"}
    status = cluster_status(es)
    assert (status["state"], status["inference_service"]) == ("connected", service)
    assert status["endpoints"][model_id] == {
        "inference_id": model_id,
        "task_type": "text_embedding",
        "service": service,
        "url": settings["url"],
    }


def test_the_secret_is_kept_in_the_data_dir_and_sent_as_a_secret(double, node, service):
    [(_, _, body)] = double.calls("PUT", "/_inference/text_embedding/reg-dense")
    secret = (node.data_dir / "callback_secret").read_text()
    if service == "custom":
        assert body["service_settings"]["secret_parameters"] == {"api_key": secret}
    else:
        assert body["service_settings"]["api_key"] == secret
    assert (node.data_dir / "callback_secret").stat().st_mode & 0o777 == 0o600


def test_other_tasks_get_a_completion_endpoint_where_custom_exists(cluster, node, es, service, traced_ner):
    model_id = uploaded(node.url, traced_ner, "reg-ner")
    allocation = started(es, model_id)
    if service == "custom":
        assert "reason" not in allocation
        assert cluster.endpoint(model_id)["task_type"] == "completion"
    else:
        assert "has no [custom] inference service" in allocation["reason"]
        assert cluster.endpoint(model_id) is None
    assert es.ml.delete_trained_model(model_id=model_id, force=True).body == {"acknowledged": True}
    assert cluster.endpoint(model_id) is None


@pytest.fixture(scope="module")
def traced_zero_shot(service, tmp_path_factory):
    """A tiny NLI model as a zero_shot_classification model whose config has no `labels` (traced as a sequence
    classifier, the graph zero-shot runs)."""
    if service != "custom":
        pytest.skip("zero_shot_classification needs the custom service")
    from sidecar.importer.trace import TracedModel, trace_model
    from tests.support.models import NLI_LABELS, tiny_model

    root = tmp_path_factory.mktemp("zero-shot")
    directory = tiny_model(root / "model", "bert", "text_classification", NLI_LABELS)
    traced = trace_model(directory, "text_classification", root / "out")
    config = {
        **traced.config,
        "inference_config": {"zero_shot_classification": traced.config["inference_config"]["text_classification"]},
    }
    return TracedModel(traced.model_id, traced.definition, config, traced.vocabulary)


def test_a_zero_shot_model_without_labels_gets_no_endpoint(cluster, node, es, traced_zero_shot):
    """The cluster validates the endpoint by calling it with `["how big"]`; without labels the node refuses that
    call, so the PUT fails and `_start` says why: no endpoint exists for a pipeline to reach."""
    model_id = uploaded(node.url, traced_zero_shot, "reg-zero-shot")
    reason = started(es, model_id)["reason"]
    assert reason.startswith(
        f"the cluster refused inference endpoint [{model_id}]: Could not complete inference endpoint creation as "
        "validation call to service threw an exception."
    )
    assert "labels" in reason
    assert cluster.endpoint(model_id) is None
    es.ml.delete_trained_model(model_id=model_id, force=True)


def test_pipeline_references_hold_off_stop_and_delete_unless_forced(cluster, node, es, traced_dense):
    model_id = uploaded(node.url, traced_dense, "reg-used")
    start(es, model_id)
    processor = {"inference": {"model_id": model_id, "input_output": {"input_field": "body", "output_field": "ml.v"}}}
    cluster.put_pipeline(
        "reg-uses-model", {"processors": [{"set": {"field": "seen", "value": True, "on_failure": [processor]}}]}
    )
    try:
        stop = lambda: es.ml.stop_trained_model_deployment(model_id=model_id)  # noqa: E731
        assert error_of(stop) == (409, "status_exception", REFERENCED_STOP.format(m=model_id))
        delete = lambda: es.ml.delete_trained_model(model_id=model_id)  # noqa: E731
        assert error_of(delete) == (409, "status_exception", REFERENCED_DELETE.format(m=model_id))
        assert es.ml.stop_trained_model_deployment(model_id=model_id, force=True).body == {"stopped": True}
        assert error_of(delete) == (409, "status_exception", REFERENCED_DELETE.format(m=model_id))
        assert cluster.endpoint(model_id) is not None
        assert es.ml.delete_trained_model(model_id=model_id, force=True).body == {"acknowledged": True}
    finally:
        cluster.delete_pipeline("reg-uses-model")
    assert cluster.endpoint(model_id) is None
    assert model_id not in cluster_status(es)["endpoints"]


def test_a_pipeline_using_an_alias_holds_off_deleting_the_alias_and_its_model(cluster, node, es):
    tree = {"feature_names": ["f"], "tree_structure": [{"node_index": 0, "leaf_value": 1}], "target_type": "regression"}
    definition = {"preprocessors": [], "trained_model": {"tree": tree}}
    es.ml.put_trained_model(
        model_id="reg-aliased", input={"field_names": ["f"]}, inference_config={"regression": {}}, definition=definition
    )
    es.ml.put_trained_model_alias(model_id="reg-aliased", model_alias="reg-nickname")
    processor = {"inference": {"model_id": "reg-nickname", "target_field": "out"}}
    cluster.put_pipeline("reg-uses-alias", {"processors": [processor]})
    try:
        delete_alias = lambda: es.ml.delete_trained_model_alias(model_id="reg-aliased", model_alias="reg-nickname")  # noqa: E731
        assert error_of(delete_alias) == (
            409, "status_exception", "Cannot delete model_alias [reg-nickname] as it is still referenced by ingest processors",
        )  # fmt: skip
        assert error_of(lambda: es.ml.delete_trained_model(model_id="reg-aliased")) == (
            409, "status_exception",
            "Cannot delete model [reg-aliased] as it has a model_alias [reg-nickname] that is still referenced by ingest "
            "processors; use force to delete the model",
        )  # fmt: skip
        assert es.ml.delete_trained_model(model_id="reg-aliased", force=True).body == {"acknowledged": True}
    finally:
        cluster.delete_pipeline("reg-uses-alias")
    assert error_of(lambda: es.ml.get_trained_models(model_id="reg-nickname"))[0] == 404  # went with its model


def test_a_semantic_text_mapping_holds_off_delete_with_the_clusters_409(cluster, node, es, traced_dense):
    """The cluster refuses to delete an endpoint a `semantic_text` field uses (8.16+): the model stays."""
    if cluster.double is not None and not cluster.double.release.since(8, 15):
        pytest.skip("semantic_text exists from 8.15")
    model_id = uploaded(node.url, traced_dense, "reg-semantic")
    start(es, model_id)
    index = "reg-semantic-docs"
    mappings = {"properties": {"body": {"type": "semantic_text", "inference_id": model_id}}}
    cluster.client.indices.create(index=index, mappings=mappings)
    try:
        delete = lambda: es.ml.delete_trained_model(model_id=model_id, force=False)  # noqa: E731
        assert es.ml.stop_trained_model_deployment(model_id=model_id).body == {"stopped": True}
        if cluster.double is not None and not cluster.double.release.checks_semantic_text:
            assert delete().body == {"acknowledged": True}
            return
        status, kind, reason = error_of(delete)
        assert (status, kind) == (409, "status_exception")
        assert reason.startswith(f"Inference endpoint {model_id} is being used in the mapping for indexes: [")
        assert es.ml.get_trained_models(model_id=model_id)["count"] == 1
        assert cluster.endpoint(model_id) is not None
        assert es.ml.delete_trained_model(model_id=model_id, force=True).body == {"acknowledged": True}
        assert cluster.endpoint(model_id) is None
    finally:
        cluster.client.indices.delete(index=index, ignore_unavailable=True)


def test_an_endpoint_someone_else_made_is_left_alone(cluster, node, es, service, traced_dense):
    """An endpoint with the model's id that no node made (here: one calling another model) is neither replaced by
    `_start` nor deleted with the model; `_start` says why ingest does not reach the deployment."""
    target = uploaded(node.url, traced_dense, "reg-their-target")
    start(es, target)
    model_id = uploaded(node.url, traced_dense, "reg-theirs")
    other = f"{node.url}/_sidecar/{route(service)}/{target}"
    secret = (node.data_dir / "callback_secret").read_text()
    if service == "custom":
        settings = {
            "url": other,
            "headers": {"Authorization": f"Bearer {secret}"},
            "request": '{"input": ${input}}',
            "response": {"json_parser": {"text_embeddings": "$.data[*].embedding"}},
        }
    else:
        settings = {"url": other, "api_key": secret}
    cluster.client.perform_request(
        "PUT",
        f"/_inference/text_embedding/{model_id}",
        body={"service": service, "service_settings": settings},
        headers={"content-type": "application/json"},
    )
    es.ml.stop_trained_model_deployment(model_id=target)  # validated; its allocation's core goes to the next one
    try:
        reason = started(es, model_id)["reason"]
        assert reason.startswith(f"an inference endpoint [{model_id}] that no sidecar node made exists")
        assert cluster.endpoint(model_id)["service_settings"]["url"] == other
        assert es.ml.delete_trained_model(model_id=model_id, force=True).body == {"acknowledged": True}
        assert cluster.endpoint(model_id)["service_settings"]["url"] == other
    finally:
        cluster.delete_endpoint(model_id)
        es.ml.delete_trained_model(model_id=target, force=True)


def test_an_endpoint_calling_a_node_that_left_is_taken_over(double, node, es):
    """The node whose URL the endpoint calls is gone (here: its URL points nowhere); a node serving the model
    re-registers the endpoint with its own URL on its next pass."""
    endpoint = double.state.endpoints["reg-dense"]
    ours = endpoint["service_settings"]["url"]
    gone = ours.replace(node.url, "http://127.0.0.1:9")
    endpoint["service_settings"]["url"] = gone
    wait_until(lambda: double.state.endpoints.get("reg-dense", {}).get("service_settings", {}).get("url") == ours)
    assert f"called a node that left ({gone}); this node takes it over" in node.log()


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


def test_a_cluster_that_cannot_call_the_node_back_says_so(double, service):
    """The PUT fails on the cluster's validation call (after the service's retries); the reason carries what
    failed."""
    from elasticsearch import AsyncElasticsearch

    from sidecar.elastic.probe import ClusterInfo
    from sidecar.elastic.registry import Registry, Serving
    from tests.support.es_inference import RetrySettings

    double.state.sender.retry = RetrySettings(initial_delay=0.1, max_delay_bound=0.5, timeout=3.0)  # as settable

    async def register():
        async with AsyncElasticsearch(double.url) as client:
            registry = Registry(client, "http://127.0.0.1:9", "secret", 32)
            info = ClusterInfo(double.state.version, "trial", "active", False, service, None)
            reason = await registry.register(info, "unreachable", "text_embedding", Serving(frozenset()))
            return reason, registry.entries

    reason, entries = asyncio.run(register())
    assert reason.startswith(
        "the cluster refused inference endpoint [unreachable]: Could not complete inference endpoint creation as "
        "validation call to service threw an exception. (Failed to send request [http://127.0.0.1:9/_sidecar/"
    )
    assert "Cannot connect to host 127.0.0.1:9" in reason
    assert entries["unreachable"]["reason"] == reason
    assert "unreachable" not in double.state.endpoints
