"""`_infer` on a node that claims 8.0: the seed's words and no deprecation warning."""

import warnings

import pytest
from elasticsearch import ApiError, ElasticsearchWarning

from tests.support.deploy import error_of, infer, start, uploaded
from tests.support.node import module_node

node = module_node("--es-version", "8.0.0")


@pytest.fixture(scope="module")
def deployed(node, es, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "classifier-8-0")
    start(es, model_id)
    return model_id


def _legacy_infer(es, model_id, docs):
    return es.perform_request(
        "POST", f"/_ml/trained_models/{model_id}/deployment/_infer",
        body={"docs": docs}, headers={"content-type": "application/json"},
    )  # fmt: skip


def test_legacy_route_is_not_deprecated(es, deployed):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ElasticsearchWarning)
        response = _legacy_infer(es, deployed, [{"text_field": "good"}])
    assert list(response.body) == ["predicted_value", "prediction_probability"]
    assert "warning" not in {key.lower() for key in response.meta.headers}


def test_missing_field_and_non_string_in_the_seed_words(es, deployed):
    missing = (400, "status_exception", "no value could be found for input field [text_field]")
    assert error_of(lambda: _legacy_infer(es, deployed, [{"other": "x"}])) == missing
    not_text = (400, "status_exception", "input value [true] for field [text_field] is not a string")
    assert error_of(lambda: _legacy_infer(es, deployed, [{"text_field": True}])) == not_text
    with pytest.raises(ApiError) as caught:
        _legacy_infer(es, deployed, [{"other": "x"}])
    assert "warning" not in {key.lower() for key in caught.value.meta.headers}


def test_stats_count_inferences(es, deployed):
    infer(es, deployed, ["good", "bad"])
    [stats] = es.ml.get_trained_models_stats(model_id=deployed)["trained_model_stats"]
    deployment = stats["deployment_stats"]
    assert list(deployment) == [
        "model_id", "inference_threads", "model_threads", "queue_capacity", "state", "allocation_status", "start_time", "nodes",
    ]  # fmt: skip
    [entry] = deployment["nodes"]
    assert entry["routing_state"] == {"routing_state": "started"}
    assert entry["inference_count"] >= 2
    assert entry["average_inference_time_ms"] > 0
    assert entry["number_of_pending_requests"] == 0
    assert "error_count" not in entry and "timeout_count" not in entry
