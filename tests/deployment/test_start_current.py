"""`_start` and `_stats` as a node claiming 9.2 answers them (Elasticsearch's assignment), and as one claiming 8.3 does
(the fields each later release added left out)."""

import pytest
from elasticsearch import ApiError

from tests.support.deploy import error_of, uploaded
from tests.support.node import NodeProcess

MODEL = "current-classifier"


@pytest.fixture(scope="module")
def node(tmp_path_factory):  # the default claim, 9.2.0
    process = NodeProcess(tmp_path_factory.mktemp("current") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def model(node, traced_classifier):
    return uploaded(node.url, traced_classifier, MODEL)


@pytest.fixture
def deployed(es, model):
    body = es.ml.start_trained_model_deployment(model_id=model, wait_for="started", timeout="60s").body
    yield body
    es.ml.stop_trained_model_deployment(model_id=model, force=True)


def size_of(es, model_id):
    return es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]["model_size_stats"]["model_size_bytes"]


def test_start_answers_the_assignment(es, model, deployed):
    assignment = deployed["assignment"]
    assert list(assignment) == [
        "task_parameters", "routing_table", "assignment_state", "start_time", "max_assigned_allocations",
        "adaptive_allocations",
    ]  # fmt: skip
    size = size_of(es, model)
    assert assignment["task_parameters"] == {
        "model_id": model,
        "deployment_id": model,
        "model_bytes": size,
        "threads_per_allocation": 1,
        "number_of_allocations": 1,
        "queue_capacity": 1024,
        "cache_size": f"{size}b",  # the model's size when not given
        "priority": "normal",
        "per_deployment_memory_bytes": 0,
        "per_allocation_memory_bytes": 0,
    }
    assert list(assignment["task_parameters"]) == [
        "model_id", "deployment_id", "model_bytes", "threads_per_allocation", "number_of_allocations",
        "queue_capacity", "cache_size", "priority", "per_deployment_memory_bytes", "per_allocation_memory_bytes",
    ]  # fmt: skip
    [(_, route)] = assignment["routing_table"].items()
    assert route == {"current_allocations": 1, "target_allocations": 1, "routing_state": "started", "reason": ""}
    assert (assignment["assignment_state"], assignment["max_assigned_allocations"]) == ("started", 1)
    assert assignment["adaptive_allocations"] is None


def test_stats_answer_assignment_stats(es, model, deployed):
    stats = es.ml.get_trained_models_stats(model_id=model)["trained_model_stats"][0]["deployment_stats"]
    assert list(stats) == [
        "deployment_id", "model_id", "threads_per_allocation", "number_of_allocations", "queue_capacity", "state",
        "allocation_status", "cache_size", "priority", "start_time", "peak_throughput_per_minute", "nodes",
    ]  # fmt: skip
    assert (stats["deployment_id"], stats["state"], stats["priority"]) == (model, "started", "normal")
    assert stats["allocation_status"] == {"allocation_count": 1, "target_allocation_count": 1, "state": "fully_allocated"}
    [node] = stats["nodes"]
    assert node["routing_state"] == {"routing_state": "started"}
    assert (node["inference_count"], node["inference_cache_hit_count"], node["number_of_pending_requests"]) == (0, 0, 0)
    assert (node["threads_per_allocation"], node["number_of_allocations"]) == (1, 1)
    assert (node["peak_throughput_per_minute"], node["throughput_last_minute"]) == (0, 0)
    assert "inference_threads" not in node and "model_threads" not in node


def test_inference_counts_in_the_sums(es, model, deployed):
    es.ml.infer_trained_model(model_id=model, docs=[{"text_field": "good"}])
    stats = es.ml.get_trained_models_stats(model_id=model)["trained_model_stats"][0]["deployment_stats"]
    assert stats["inference_count"] == 1
    [node] = stats["nodes"]
    assert node["inference_count"] == 1 and node["average_inference_time_ms"] > 0


def test_task_parameters_given(es, model):
    body = es.ml.start_trained_model_deployment(
        model_id=model, cache_size="10kb", priority="low", queue_capacity=7, wait_for="started", timeout="60s"
    ).body
    try:
        params = body["assignment"]["task_parameters"]
        assert (params["cache_size"], params["priority"], params["queue_capacity"]) == ("10kb", "low", 7)
        stats = es.ml.get_trained_models_stats(model_id=model)["trained_model_stats"][0]["deployment_stats"]
        assert (stats["cache_size"], stats["priority"]) == ("10kb", "low")
    finally:
        es.ml.stop_trained_model_deployment(model_id=model)


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        ({"priority": "low", "number_of_allocations": 2}, ["[number_of_allocations] must be 1 when [priority] is low"]),
        ({"priority": "low", "threads_per_allocation": 2}, ["[threads_per_allocation] must be 1 when [priority] is low"]),
        ({"threads_per_allocation": 3}, ["[threads_per_allocation] must be a power of 2 less than or equal to 32"]),
        ({"threads_per_allocation": 64}, ["[threads_per_allocation] must be a power of 2 less than or equal to 32"]),
    ],
)
def test_start_refuses_what_elasticsearch_refuses(es, model, params, errors):
    reason = "Validation Failed: " + "".join(f"{i}: {e};" for i, e in enumerate(errors, 1))
    call = lambda: es.ml.start_trained_model_deployment(model_id=model, **params)  # noqa: E731
    assert error_of(call) == (400, "action_request_validation_exception", reason)


def test_cache_size_must_be_a_byte_size(es, model):
    status, kind, reason = error_of(lambda: es.ml.start_trained_model_deployment(model_id=model, cache_size="lots"))
    assert (status, kind) == (400, "parse_exception")
    assert reason == "failed to parse setting [cache_size] with value [lots] as a size in bytes: unit is missing or unrecognized"


def test_an_existing_deployment_id_is_refused_first(es, model, deployed):
    reason = f"Could not start model deployment because an existing deployment with the same id [{model}] exist"
    assert error_of(lambda: es.ml.start_trained_model_deployment(model_id=model)) == (400, "status_exception", reason)


def test_a_deployment_id_naming_another_model_is_refused(es, node, model, traced_classifier):
    other = uploaded(node.url, traced_classifier, "current-other")
    reason = (
        f"Deployment id [{other}] is the same as an another model which is not the model being deployed. "
        "Deployment id can be the same as the model being deployed but cannot match a different model"
    )
    call = lambda: es.ml.start_trained_model_deployment(model_id=model, deployment_id=other)  # noqa: E731
    assert error_of(call) == (400, "status_exception", reason)


def test_a_model_cannot_take_a_current_deployments_id(es, model, deployed):
    with pytest.raises(ApiError) as caught:
        es.ml.put_trained_model(
            model_id=model, model_type="pytorch", input={"field_names": ["text_field"]}, inference_config={"ner": {}}
        )
    assert caught.value.meta.status == 400
    assert caught.value.body["error"]["reason"] == f"Cannot create model [{model}] the id is the same as an current model deployment"


@pytest.fixture(scope="module")
def node_8_3(tmp_path_factory):
    process = NodeProcess(tmp_path_factory.mktemp("node-8-3") / "data", "--es-version", "8.3.0").start()
    yield process
    process.stop()


def test_8_3_has_the_assignment_without_later_fields(node_8_3, traced_classifier):
    es = node_8_3.client()
    model = uploaded(node_8_3.url, traced_classifier, "classifier-8-3")
    body = es.ml.start_trained_model_deployment(model_id=model, wait_for="started", timeout="60s").body
    try:
        assignment = body["assignment"]
        assert list(assignment) == ["task_parameters", "routing_table", "assignment_state", "start_time"]
        assert list(assignment["task_parameters"]) == [
            "model_id", "model_bytes", "threads_per_allocation", "number_of_allocations", "queue_capacity",
        ]  # fmt: skip
        [(_, route)] = assignment["routing_table"].items()
        assert route == {"routing_state": "started", "reason": ""}
        stats = es.ml.get_trained_models_stats(model_id=model)["trained_model_stats"][0]["deployment_stats"]
        assert "deployment_id" not in stats and "priority" not in stats and "cache_size" not in stats
        assert (stats["threads_per_allocation"], stats["number_of_allocations"]) == (1, 1)
    finally:
        es.ml.stop_trained_model_deployment(model_id=model)
