"""Elasticsearch's YAML REST cases for NLP models and deployments (x-pack `ml/3rd_party_deployment.yml`), one test per
case with the case's name first in its docstring: the same requests through the official client, the same expected
answers. A `catch: /regex/` is checked as Elasticsearch's YAML runner checks it, against the whole error body, with the
status Elasticsearch answers it with. That runner asks for `error_trace`, so a regex may match a Java stack trace, which
the node never sends: there the exception's class is checked as its REST type instead.

Not translated: "Test start deployment fails while model download in progress", which needs Elasticsearch's model
repository (a `.elser_model_2` PUT starts a download); the node has none and refuses ids that start with a dot."""

import json
import re

import pytest
from elasticsearch import ApiError

from tests.support.es_test_model import clean_ml, put_test_model


@pytest.fixture
def setup(es):
    """The YAML's setup (`test_model` and `another_test_model`, Elasticsearch's tiny test model), then the cleanup
    Elasticsearch's REST tests run after every case."""
    put_test_model(es, "test_model")
    put_test_model(es, "another_test_model")
    yield
    clean_ml(es)


def caught(call, **params):
    """(status, body as JSON text) of the error `call` must answer."""
    with pytest.raises(ApiError) as error:
        call(**params)
    return error.value.meta.status, json.dumps(error.value.body)


def fill_mask(tokenization, mask_token=None):
    config = {"tokenization": {tokenization: {"with_special_tokens": False}}}
    if mask_token is not None:
        config["mask_token"] = mask_token
    return {"fill_mask": config}


def infer_words(es, model_id, *words):
    for word in words:
        es.ml.infer_trained_model(model_id=model_id, docs=[{"input": word}])


def node_stats(es, model_id):
    stats = es.ml.get_trained_models_stats(model_id=model_id)
    assert stats["count"] == 1
    return stats["trained_model_stats"][0]["deployment_stats"]["nodes"][0]


def test_fill_mask_with_two_mask_tokens(es, setup):
    """Test getting and putting Fill Mask with two mask tokens, as well as exceptions caused by requests with the wrong
    token"""
    put = {"description": "simple model for testing", "model_type": "pytorch"}
    es.ml.put_trained_model(model_id="bert_fill_mask_model", inference_config=fill_mask("bert"), **put)
    es.ml.put_trained_model(model_id="roberta_fill_mask_model", inference_config=fill_mask("roberta"), **put)
    es.ml.put_trained_model(model_id="with_correct_mask_token", inference_config=fill_mask("bert", "[MASK]"), **put)
    es.ml.put_trained_model(
        model_id="with_other_correct_mask_token", inference_config=fill_mask("roberta", "<mask>"), **put
    )

    for model_id, token in [("bert_fill_mask_model", "[MASK]"), ("roberta_fill_mask_model", "<mask>")]:
        [config] = es.ml.get_trained_models(model_id=model_id)["trained_model_configs"]
        assert config["inference_config"]["fill_mask"]["mask_token"] == token

    # the YAML's /IllegalArgumentException. Mask token .../ matches the stack trace: the class is checked as its type
    for tokenization, requested, regex in [
        ("bert", "<mask>", r"Mask token requested was \[<mask>\] but must be \[\[MASK\]\] for this model"),
        ("roberta", "[MASK]", r"Mask token requested was \[\[MASK\]\] but must be \[<mask>\] for this model"),
    ]:
        config = fill_mask(tokenization, requested)
        status, body = caught(es.ml.put_trained_model, model_id="incorrect_mask_token", inference_config=config, **put)
        assert status == 400 and '"illegal_argument_exception"' in body
        assert re.search(regex, body)


def test_start_fails_with_missing_model_definition(es, setup):
    """Test start deployment fails with missing model definition"""
    es.ml.put_trained_model(
        model_id="distilbert-finetuned-sst",
        description="distilbert-base-uncased-finetuned-sst-2-english.pt",
        model_type="pytorch",
        inference_config={"ner": {}},
    )
    status, body = caught(lambda: es.ml.start_trained_model_deployment(model_id="distilbert-finetuned-sst"))
    assert status == 404
    assert re.search(r"Could not find trained model definition \[distilbert-finetuned-sst\]", body)


def test_start_and_stop_with_no_cache(es, setup):
    """Test start and stop deployment with no cache"""
    started = es.ml.start_trained_model_deployment(model_id="test_model", cache_size=0, wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"
    assert started["assignment"]["task_parameters"]["model_id"] == "test_model"
    assert started["assignment"]["task_parameters"]["cache_size"] == "0"

    assert es.ml.stop_trained_model_deployment(model_id="test_model").body == {"stopped": True}


def test_start_and_stop_with_low_priority(es, setup):
    """Test start and stop deployment with low priority"""
    started = es.ml.start_trained_model_deployment(model_id="test_model", priority="low", wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"
    parameters = started["assignment"]["task_parameters"]
    assert parameters["model_id"] == "test_model"
    assert parameters["priority"] == "low"
    assert (parameters["number_of_allocations"], parameters["threads_per_allocation"]) == (1, 1)

    assert es.ml.stop_trained_model_deployment(model_id="test_model").body == {"stopped": True}


def test_low_priority_with_multiple_allocations(es, setup):
    """Test start deployment with low priority and multiple allocations"""
    status, body = caught(
        lambda: es.ml.start_trained_model_deployment(model_id="test_model", priority="low", number_of_allocations=3)
    )
    assert status == 400
    assert re.search(r"\[number_of_allocations\] must be 1 when \[priority\] is low", body)


def test_low_priority_with_multiple_threads_per_allocation(es, setup):
    """Test start deployment with low priority and multiple threads per allocation"""
    status, body = caught(
        lambda: es.ml.start_trained_model_deployment(model_id="test_model", priority="low", threads_per_allocation=4)
    )
    assert status == 400
    assert re.search(r"\[threads_per_allocation\] must be 1 when \[priority\] is low", body)


def test_put_model_alias_on_pytorch_model(es, setup):
    """Test put model alias on pytorch model"""
    es.ml.put_trained_model_alias(model_alias="pytorch", model_id="test_model")
    found = es.ml.get_trained_models(model_id="pytorch")
    assert found["count"] == 1 and len(found["trained_model_configs"]) == 1
    assert found["trained_model_configs"][0]["model_id"] == "test_model"

    es.ml.put_trained_model_alias(model_alias="pytorch", model_id="another_test_model", reassign=True)
    found = es.ml.get_trained_models(model_id="pytorch")
    assert found["count"] == 1 and len(found["trained_model_configs"]) == 1
    assert found["trained_model_configs"][0]["model_id"] == "another_test_model"


def test_update_model_alias_to_undeployed_model(es, setup):
    """Test update model alias on pytorch model to undeployed model"""
    started = es.ml.start_trained_model_deployment(model_id="test_model", wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"
    assert started["assignment"]["task_parameters"]["model_id"] == "test_model"

    es.ml.put_trained_model_alias(model_alias="pytorch", model_id="test_model")
    infer_words(es, "pytorch", "words")
    assert node_stats(es, "test_model")["inference_count"] == 1

    status, body = caught(
        lambda: es.ml.put_trained_model_alias(model_alias="pytorch", model_id="another_test_model", reassign=True)
    )
    assert status == 400
    assert re.search(
        r"cannot reassign model_alias \[pytorch\] to model \[another_test_model\] from model \[test_model\] as it is "
        r"not yet deployed",
        body,
    )


def test_include_model_definition_status(es, setup):
    """Test include model definition status"""
    [config] = es.ml.get_trained_models(model_id="test_model", include="definition_status")["trained_model_configs"]
    assert config["fully_defined"] is True


def test_cannot_start_two_deployments_with_the_same_id(es, setup):
    """Test cannot start 2 deployments with the same Id"""
    started = es.ml.start_trained_model_deployment(
        model_id="test_model", deployment_id="test_model_deployment", wait_for="started"
    )
    assert started["assignment"]["assignment_state"] == "started"

    status, body = caught(
        lambda: es.ml.start_trained_model_deployment(
            model_id="test_model", deployment_id="test_model_deployment", wait_for="started"
        )
    )
    assert status == 400
    assert re.search(
        r"Could not start model deployment because an existing deployment with the same id \[test_model_deployment\] "
        r"exist",
        body,
    )


def test_cannot_start_when_deployment_id_matches_a_different_model(es, setup):
    """Test cannot start when deployment Id matches a different model"""
    status, body = caught(
        lambda: es.ml.start_trained_model_deployment(model_id="test_model", deployment_id="another_test_model")
    )
    assert status == 400
    assert re.search(
        r"Deployment id \[another_test_model\] is the same as an another model which is not the model being deployed. "
        r"Deployment id can be the same as the model being deployed but cannot match a different model",
        body,
    )


def test_start_deployment_with_default_id(es, setup):
    """Test start deployment with default Id"""
    started = es.ml.start_trained_model_deployment(model_id="test_model", wait_for="started")
    assert started["assignment"]["assignment_state"] == "started"
    assert started["assignment"]["task_parameters"]["model_id"] == "test_model"
    assert started["assignment"]["task_parameters"]["deployment_id"] == "test_model"


def test_cannot_create_model_with_a_deployment_id(es, setup):
    """Test cannot create model with a deployment Id"""
    started = es.ml.start_trained_model_deployment(
        model_id="test_model", deployment_id="test_model_deployment", wait_for="started"
    )
    assert started["assignment"]["assignment_state"] == "started"

    status, body = caught(
        lambda: es.ml.put_trained_model(
            model_id="test_model_deployment", model_type="pytorch", inference_config={"ner": {}}
        )
    )
    assert status == 400
    assert re.search(
        r"Cannot create model \[test_model_deployment\] the id is the same as an current model deployment", body
    )


def test_put_model_config_with_japanese_tokenizer(es, setup):
    """Test put model config with Japanese tokenizer"""
    bert_ja = {"with_special_tokens": False, "max_sequence_length": 512, "truncate": "first", "span": -1}
    put = es.ml.put_trained_model(
        model_id="j_bert",
        description="model config with Japanese tokenizer",
        model_type="pytorch",
        inference_config={"pass_through": {"tokenization": {"bert_ja": bert_ja}}},
    )
    assert list(put["inference_config"]["pass_through"]["tokenization"]) == ["bert_ja"]


def test_put_model_config_with_prefix_strings(es, setup):
    """Test put model config with prefix strings"""
    embedding = {"model_type": "pytorch", "inference_config": {"text_embedding": {}}}
    both = {"search": "this is a query", "ingest": "this is a passage"}
    put = es.ml.put_trained_model(model_id="model_with_prefixes", prefix_strings=both, **embedding)
    assert put["prefix_strings"] == both
    [config] = es.ml.get_trained_models(model_id="model_with_prefixes")["trained_model_configs"]
    assert (config["prefix_strings"]["search"], config["prefix_strings"]["ingest"]) == (both["search"], both["ingest"])

    put = es.ml.put_trained_model(
        model_id="model_with_search_prefix", prefix_strings={"search": "this is a query"}, **embedding
    )
    assert put["prefix_strings"]["search"] == "this is a query"
    assert not put["prefix_strings"].get("ingest")  # is_false: absent, null or empty

    put = es.ml.put_trained_model(
        model_id="model_with_ingest_prefix", prefix_strings={"ingest": "this is a passage"}, **embedding
    )
    assert not put["prefix_strings"].get("search")
    assert put["prefix_strings"]["ingest"] == "this is a passage"
