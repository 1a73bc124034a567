"""The inference cache, through the official client on a real node (claiming 9.2) with Elasticsearch's own tiny test
model: hits answer without a forward pass and count in `_stats`, what changes a result misses, `cache_size` bounds it
(0 disables it), `_clear` and `_stop` empty it."""

import json
import urllib.request

import pytest
from elasticsearch import ApiError
from prometheus_client.parser import text_string_to_metric_families

from tests.support.es_test_model import (
    PASS_THROUGH_BERT,
    SUPER_SIMPLE_BASE64,
    SUPER_SIMPLE_LENGTH,
    VOCABULARY,
    clean_ml,
    put_test_model,
)
from tests.support.node import NodeProcess

MODEL = "cache_model"


@pytest.fixture(scope="module")
def node(tmp_path_factory):  # the default claim, 9.2.0
    process = NodeProcess(tmp_path_factory.mktemp("cache") / "data").start()
    yield process
    process.stop()


@pytest.fixture
def model(es):
    put_test_model(es, MODEL)
    yield MODEL
    clean_ml(es)


def deploy(es, model_id, **params):
    es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started", timeout="60s", **params)


def infer(es, model_id, *texts, **body):
    return es.ml.infer_trained_model(model_id=model_id, docs=[{"input": t} for t in texts], **body)["inference_results"]


def node_stats(es, model_id):
    return es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]["deployment_stats"]["nodes"][0]


def forward_passes(node, deployment_id):
    """Documents through a worker's forward pass, as the node's Prometheus page counts them."""
    with urllib.request.urlopen(f"{node.url}/metrics", timeout=30) as response:
        page = response.read().decode()
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "sidecar_inference_documents_total" and sample.labels["deployment"] == deployment_id:
                return sample.value
    return 0.0


@pytest.fixture
def counts(es, node):
    """(inference_count, inference_cache_hit_count) in `_stats`, and forward passes since the test began."""
    before = forward_passes(node, MODEL)

    def read():
        stats = node_stats(es, MODEL)
        return stats["inference_count"], stats["inference_cache_hit_count"], forward_passes(node, MODEL) - before

    return read


def test_a_repeated_text_is_a_hit_without_a_forward_pass(es, counts, model):
    deploy(es, model)
    first = infer(es, model, "my words")
    assert counts() == (1, 0, 1)
    assert infer(es, model, "my words") == first
    assert counts() == (2, 1, 1)  # counted as an inference, as Elasticsearch counts it
    stats = node_stats(es, model)
    assert stats["inference_cache_hit_count_last_minute"] == 0  # the first minute has not ended
    assert stats["average_inference_time_ms_excluding_cache_hits"] == 2 * stats["average_inference_time_ms"]


def test_documents_of_one_request_mix_hits_and_misses_in_order(es, counts, model):
    deploy(es, model)
    infer(es, model, "these")
    results = infer(es, model, "these", "are", "these words", inference_config={"pass_through": {"results_field": "x"}})
    assert [list(r) for r in results] == [["x"], ["x"], ["x"]]  # the options are part of the key: all three miss
    assert counts() == (4, 0, 4)
    again = infer(es, model, "are", "these", "new", inference_config={"pass_through": {"results_field": "x"}})
    assert [list(r) for r in again] == [["x"], ["x"], ["x"]]
    assert counts() == (7, 2, 5)


def test_another_prefix_is_a_miss(es, node, counts):
    es.ml.put_trained_model(
        model_id=MODEL, model_type="pytorch", inference_config=PASS_THROUGH_BERT,
        prefix_strings={"ingest": "these ", "search": "my "},
    )  # fmt: skip
    es.ml.put_trained_model_vocabulary(model_id=MODEL, vocabulary=VOCABULARY)
    es.ml.put_trained_model_definition_part(
        model_id=MODEL, part=0, definition=SUPER_SIMPLE_BASE64, total_definition_length=SUPER_SIMPLE_LENGTH,
        total_parts=1,
    )  # fmt: skip
    try:
        deploy(es, MODEL)
        for input_type in ("ingest", "search", "ingest"):
            body = json.dumps({"input": "words", "input_type": input_type}).encode()
            url = f"{node.url}/_sidecar/custom/{MODEL}"
            call = urllib.request.Request(url, body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(call, timeout=30) as response:
                assert response.status == 200
        assert counts() == (3, 1, 2)
        infer(es, MODEL, "words")  # `_infer` applies no prefix: a third key
        assert counts() == (4, 1, 3)
    finally:
        clean_ml(es)


def test_cache_size_0_disables_it(es, counts, model):
    deploy(es, model, cache_size=0)
    infer(es, model, "words")
    infer(es, model, "words")
    assert counts() == (2, 0, 2)


def test_the_least_recently_used_goes_first_within_cache_size(es, counts, model):
    # each entry: its text and `{"predicted_value":[[1.0,1.0]]}` (31 bytes); 100 bytes hold two of them
    deploy(es, model, cache_size="100b")
    infer(es, model, "these")
    infer(es, model, "are")
    infer(es, model, "these")  # a hit: "are" is now the least recently used
    infer(es, model, "words")  # no room for three: "are" goes
    assert counts() == (4, 1, 3)
    infer(es, model, "these")
    infer(es, model, "words")
    assert counts() == (6, 3, 3)
    infer(es, model, "are")
    assert counts() == (7, 3, 4)


def test_clear_empties_it_and_the_next_request_misses(es, counts, model):
    deploy(es, model)
    infer(es, model, "words")
    infer(es, model, "words")
    assert es.ml.clear_trained_model_deployment_cache(model_id=model).body == {"cleared": True}
    infer(es, model, "words")
    assert counts() == (3, 1, 2)  # the hit count stays; the third was a miss


def test_clear_of_an_unknown_deployment_is_404(es, model):
    with pytest.raises(ApiError) as error:
        es.ml.clear_trained_model_deployment_cache(model_id="nothing_deployed")
    assert error.value.meta.status == 404
    assert error.value.body["error"]["type"] == "resource_not_found_exception"
    assert error.value.body["error"]["reason"] == "No known model deployment with id [nothing_deployed]"


def test_stop_empties_it(es, model):
    deploy(es, model)
    infer(es, model, "words")
    es.ml.stop_trained_model_deployment(model_id=model)
    deploy(es, model)
    infer(es, model, "words")
    assert node_stats(es, model)["inference_cache_hit_count"] == 0


# Elasticsearch's YAML REST cases (x-pack `ml/3rd_party_deployment.yml`), through the official client
@pytest.fixture
def test_model(es):
    put_test_model(es, "test_model")
    yield "test_model"
    clean_ml(es)


def infer_words(es, model_id, *words):
    for word in words:
        es.ml.infer_trained_model(model_id=model_id, docs=[{"input": word}])


def start_with_a_10kb_cache(es, **deployment_id):
    """The YAML cases' `_start` with `cache_size: 10kb`, and what they match in its answer."""
    started = es.ml.start_trained_model_deployment(
        model_id="test_model", cache_size="10kb", wait_for="started", **deployment_id
    )
    assert started["assignment"]["assignment_state"] == "started"
    assert started["assignment"]["task_parameters"]["model_id"] == "test_model"
    assert started["assignment"]["task_parameters"]["cache_size"] == "10kb"


def yaml_counts(es):
    """(inference_count, inference_cache_hit_count) of test_model's one node."""
    stats = es.ml.get_trained_models_stats(model_id="test_model")
    assert stats["count"] == 1
    node = stats["trained_model_stats"][0]["deployment_stats"]["nodes"][0]
    return node["inference_count"], node["inference_cache_hit_count"]

def test_start_and_stop_deployment_with_cache(es, test_model):
    """Test start and stop deployment with cache"""
    start_with_a_10kb_cache(es)
    infer_words(es, "test_model", "words", "are", "words")
    assert yaml_counts(es) == (3, 1)
    assert es.ml.stop_trained_model_deployment(model_id="test_model").body == {"stopped": True}


def test_clear_deployment_cache(es, test_model):
    """Test clear deployment cache"""
    start_with_a_10kb_cache(es, deployment_id="test_model_deployment_cache_test")
    infer_words(es, "test_model", "words", "are", "words")
    assert yaml_counts(es) == (3, 1)

    cleared = es.ml.clear_trained_model_deployment_cache(model_id="test_model_deployment_cache_test")
    assert cleared.body == {"cleared": True}
    infer_words(es, "test_model", "words")
    assert yaml_counts(es) == (4, 1)
    assert es.ml.stop_trained_model_deployment(model_id="test_model").body == {"stopped": True}
