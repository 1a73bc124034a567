"""`_start` as the seed says, through a real node with real worker processes."""

import time
from datetime import datetime

import pytest
from elasticsearch import ApiError

from sidecar.deployment.threads import effective_threads
from tests.support.deploy import error_of, infer, start, uploaded


def stop(es, model_id):
    es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_stop")


def test_start_answers_the_seeds_body(es, node, ner_model):
    body = start(es, ner_model, wait_for="started", timeout="1m")
    try:
        allocation = body["allocation"]
        assert list(allocation) == ["task_parameters", "routing_table", "allocation_state", "start_time"]
        assert allocation["task_parameters"] == {
            "model_id": ner_model,
            "model_bytes": node_definition_length(es, ner_model),
            "inference_threads": 1,
            "model_threads": 1,
            "queue_capacity": 1024,
        }
        [(node_id, route)] = allocation["routing_table"].items()
        assert len(node_id) == 22 and route == {"routing_state": "started", "reason": ""}
        assert allocation["allocation_state"] == "started"
        assert datetime.strptime(allocation["start_time"], "%Y-%m-%dT%H:%M:%S.%fZ")
    finally:
        stop(es, ner_model)


def node_definition_length(es, model_id):
    stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    return stats["model_size_stats"]["model_size_bytes"]


def test_already_started_is_409_with_the_inner_cause(es, ner_model):
    start(es, ner_model)
    try:
        with pytest.raises(ApiError) as caught:
            start(es, ner_model)
        assert caught.value.meta.status == 409
        assert caught.value.body["error"] == {
            "root_cause": [
                {"type": "resource_already_exists_exception", "reason": f"allocation for model with id [{ner_model}] already exist"}
            ],
            "type": "status_exception",
            "reason": f"Cannot start deployment [{ner_model}] because it has already been started",
            "caused_by": {"type": "resource_already_exists_exception", "reason": f"allocation for model with id [{ner_model}] already exist"},
        }
    finally:
        stop(es, ner_model)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"inference_threads": 0}, "Validation Failed: 1: [inference_threads] must be a positive integer;"),
        ({"model_threads": -1, "inference_threads": 0}, "Validation Failed: 1: [model_threads] must be a positive integer;2: [inference_threads] must be a positive integer;"),
        ({"queue_capacity": 0}, "Validation Failed: 1: [queue_capacity] must be a positive integer;"),
        ({"threads_per_allocation": 0}, "Validation Failed: 1: [threads_per_allocation] must be a positive integer;"),
    ],
)  # fmt: skip
def test_values_below_one_are_validation_errors(es, ner_model, params, reason):
    assert error_of(lambda: start(es, ner_model, **params)) == (400, "action_request_validation_exception", reason)


def test_unknown_wait_for_is_elasticsearchs_enum_error(es, ner_model):
    assert error_of(lambda: start(es, ner_model, wait_for="foo")) == (
        400, "illegal_argument_exception",
        "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State.FOO",
    )  # fmt: skip


def test_non_numeric_threads(es, ner_model):
    assert error_of(lambda: start(es, ner_model, inference_threads="abc")) == (
        400, "illegal_argument_exception", "Failed to parse int parameter [inference_threads] with value [abc]",
    )  # fmt: skip


def test_unknown_and_non_pytorch_models(es):
    assert error_of(lambda: start(es, "nobody")) == (404, "resource_not_found_exception", "Could not find trained model [nobody]")
    assert error_of(lambda: start(es, "lang_ident_model_1")) == (
        400, "status_exception",
        "model [lang_ident_model_1] of type [lang_ident] cannot be deployed. Only PyTorch models can be deployed",
    )  # fmt: skip


def test_body_values_and_query_precedence(es, classifier_model):
    body = es.perform_request(
        "POST",
        f"/_ml/trained_models/{classifier_model}/deployment/_start",
        params={"queue_capacity": "7"},
        body={"queue_capacity": 99, "number_of_allocations": 2, "wait_for": "started"},
        headers={"content-type": "application/json"},
    ).body
    try:
        params = body["allocation"]["task_parameters"]
        assert (params["queue_capacity"], params["model_threads"]) == (7, 2)
    finally:
        stop(es, classifier_model)


def test_thread_values_in_use_appear_in_stats(es, node, classifier_model):
    start(es, classifier_model, inference_threads=8, model_threads=1)
    try:
        stats = es.ml.get_trained_models_stats(model_id=classifier_model)["trained_model_stats"][0]["deployment_stats"]
        assert stats["inference_threads"] == 8  # what was asked for
        [entry] = stats["nodes"]
        cores = es.perform_request("GET", "/_sidecar/status").body["usable_cores"]
        assert (entry["inference_threads"], entry["model_threads"]) == effective_threads(8, 1, cores)
        assert entry["inference_threads"] < 8
    finally:
        stop(es, classifier_model)


def test_start_and_stats_give_the_reason_for_a_lowered_value(es, node, classifier_model):
    cores = es.perform_request("GET", "/_sidecar/status").body["usable_cores"]
    asked = cores + 1
    inference, model = effective_threads(asked, 1, cores)
    reason = f"inference_threads [{asked}] lowered to [{inference}] for the [{cores}] usable cores"
    body = start(es, classifier_model, inference_threads=asked, model_threads=1)
    try:
        [route] = body["allocation"]["routing_table"].values()
        assert route == {"routing_state": "started", "reason": reason}
        stats = es.ml.get_trained_models_stats(model_id=classifier_model)["trained_model_stats"][0]["deployment_stats"]
        [entry] = stats["nodes"]
        assert entry["routing_state"] == {"routing_state": "started", "reason": reason}
        assert (entry["inference_threads"], entry["model_threads"]) == (inference, model)
    finally:
        stop(es, classifier_model)


def test_timeout_keeps_the_deployment(es, node, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "slow-start")
    assert error_of(lambda: start(es, model_id, timeout="1ms")) == (
        408, "status_exception",
        "Timed out after [1ms] waiting for model deployment to start. Use the trained model stats API to track the state of the deployment.",
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
            if stats["deployment_stats"]["state"] == "started":
                break
            time.sleep(0.2)
        assert stats["deployment_stats"]["allocation_status"]["state"] == "fully_allocated"
        assert infer(es, model_id, ["the film was good"])[0]["predicted_value"] in ("NEGATIVE", "POSITIVE")
    finally:
        stop(es, model_id)


def test_wait_for_starting_returns_at_once(es, node, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "early-return")
    body = start(es, model_id, wait_for="starting")
    try:
        assert body["allocation"]["allocation_state"] == "starting"
        assert [r["routing_state"] for r in body["allocation"]["routing_table"].values()] == ["starting"]
    finally:
        stop(es, model_id)


def test_stop_then_infer_is_409(es, classifier_model):
    start(es, classifier_model)
    assert es.perform_request("POST", f"/_ml/trained_models/{classifier_model}/deployment/_stop").body == {"stopped": True}
    assert error_of(lambda: infer(es, classifier_model, ["x"])) == (
        409, "status_exception",
        f"Model [{classifier_model}] must be deployed to use. Please deploy with the start trained model deployment API.",
    )  # fmt: skip
    assert es.perform_request("POST", f"/_ml/trained_models/{classifier_model}/deployment/_stop").body == {"stopped": True}


def test_delete_while_deployed_is_409_unless_forced(es, node, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "deployed-delete")
    start(es, model_id)
    assert error_of(lambda: es.ml.delete_trained_model(model_id=model_id)) == (
        409, "status_exception", f"Cannot delete model [{model_id}] as it is currently deployed; use force to delete the model",
    )  # fmt: skip
    assert es.ml.delete_trained_model(model_id=model_id, force=True).body == {"acknowledged": True}
    assert es.perform_request("GET", "/_sidecar/status").body["deployments"].get(model_id) is None
