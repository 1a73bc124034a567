"""Model aliases through the official client: Elasticsearch's own alias cases (inference_crud.yml) and the rules for
deployed models, resolution in GET, `_stats`, both `_infer` forms and the callback."""

import orjson
import pytest
from elasticsearch import ElasticsearchWarning

from tests.support.deploy import error_of, infer, start, uploaded


def tree_config(task, fields=("field1", "field2")):
    """The empty tree models of Elasticsearch's inference_crud.yml."""
    tree = {"feature_names": list(fields), "tree_structure": [{"node_index": 0, "leaf_value": 1}], "target_type": task}
    if task == "classification":
        tree["classification_labels"] = ["no", "yes"]
    return {
        "description": "empty model for tests",
        "input": {"field_names": list(fields)},
        "inference_config": {task: {}},
        "definition": {"preprocessors": [], "trained_model": {"tree": tree}},
    }


@pytest.fixture(scope="module")
def trees(es):
    for model_id, task in [
        ("a-regression-model-0", "regression"),
        ("a-regression-model-1", "regression"),
        ("a-classification-model", "classification"),
        ("z-classification-model", "classification"),
    ]:
        es.ml.put_trained_model(model_id=model_id, **tree_config(task))


@pytest.fixture
def alias(es, request):
    """An alias name for one test, removed afterwards from whichever model it names."""
    name = request.node.name.split("[")[0].replace("_", "-")[5:45].rstrip("-0123456789") + "-alias"
    yield name
    for config in es.ml.get_trained_models(model_id="*")["trained_model_configs"]:
        if name in config.get("metadata", {}).get("model_aliases", []):
            es.ml.delete_trained_model_alias(model_id=config["model_id"], model_alias=name)


def ids(response):
    return [config["model_id"] for config in response["trained_model_configs"]]


def test_get_by_alias_finds_the_model_it_names_and_follows_a_reassign(es, trees, alias):
    assert es.ml.put_trained_model_alias(model_id="a-regression-model-1", model_alias=alias) == {"acknowledged": True}
    found = es.ml.get_trained_models(model_id=f"{alias},a-classification-model")
    assert found["count"] == 2 and ids(found) == ["a-classification-model", "a-regression-model-1"]

    es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias=alias, reassign=True)
    assert ids(es.ml.get_trained_models(model_id=f"{alias},a-classification-model")) == [
        "a-classification-model", "a-regression-model-0",
    ]  # fmt: skip

    es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias=f"{alias}-again")
    try:
        [first] = es.ml.get_trained_models(model_id="a-regression-model-*", size=1)["trained_model_configs"]
        assert first["model_id"] == "a-regression-model-0"
        assert first["metadata"]["model_aliases"] == [alias, f"{alias}-again"]
        assert list(first).index("metadata") == list(first).index("input") - 1  # tags, metadata, input
        assert ids(es.ml.get_trained_models(model_id=f"{alias[:6]}*")) == ["a-regression-model-0"]
    finally:
        es.ml.delete_trained_model_alias(model_id="a-regression-model-0", model_alias=f"{alias}-again")


def test_stats_by_alias(es, trees, alias):
    es.ml.put_trained_model_alias(model_id="a-classification-model", model_alias=alias)
    stats = es.ml.get_trained_models_stats(model_id=alias)
    assert stats["count"] == 1 and stats["trained_model_stats"][0]["model_id"] == "a-classification-model"


def test_an_alias_for_a_missing_model_is_404(es, trees, alias):
    assert error_of(lambda: es.ml.put_trained_model_alias(model_id="missing-model", model_alias=alias)) == (
        404, "resource_not_found_exception", "Could not find trained model [missing-model]",
    )  # fmt: skip


def test_bad_aliases_fail_validation(es, trees):
    invalid = (
        "Invalid model_alias; 'regression-model-123123' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
        "underscores; must start with alphanumeric and cannot end with numbers"
    )
    same = "model_alias [regression-model-123123] cannot equal model_id [regression-model-123123]"
    call = lambda: es.ml.put_trained_model_alias(model_id="regression-model-123123", model_alias="regression-model-123123")  # noqa: E731
    assert error_of(call) == (400, "action_request_validation_exception", f"Validation Failed: 1: {same};2: {invalid};")
    call = lambda: es.ml.put_trained_model_alias(model_id="z-classification-model", model_alias="z-classification-model")  # noqa: E731
    assert error_of(call)[:2] == (400, "action_request_validation_exception")


def test_an_alias_is_never_a_model_id(es, trees, alias):
    call = lambda: es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias="a-classification-model")  # noqa: E731
    assert error_of(call) == (400, "status_exception", "model_alias cannot be the same as an existing trained model_id")
    es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias=alias)
    assert error_of(lambda: es.ml.put_trained_model(model_id=alias, **tree_config("regression"))) == (
        400, "status_exception",
        f"requested model_id [{alias}] is the same as an existing model_alias. Model model_aliases and ids must be unique",
    )  # fmt: skip


def test_moving_an_alias_needs_reassign_and_a_model_of_the_same_kind(es, trees, alias):
    es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias=alias)
    assert error_of(lambda: es.ml.put_trained_model_alias(model_id="a-regression-model-1", model_alias=alias, reassign=False)) == (
        400, "status_exception",
        f"cannot assign model_alias [{alias}] to model_id [a-regression-model-1] as model_alias already refers to "
        "[a-regression-model-0]. Set parameter [reassign] to [true] if model_alias should be reassigned.",
    )  # fmt: skip
    assert error_of(lambda: es.ml.put_trained_model_alias(model_id="a-classification-model", model_alias=alias, reassign=True)) == (
        400, "status_exception",
        f"cannot reassign model_alias [{alias}] to model [a-classification-model] with inference config type "
        "[classification] from model [a-regression-model-0] with type [regression]",
    )  # fmt: skip
    assert es.ml.get_trained_models(model_id=alias)["trained_model_configs"][0]["model_id"] == "a-regression-model-0"


def test_moving_an_alias_to_a_model_with_other_inputs_warns(es, trees, alias):
    es.ml.put_trained_model(model_id="other-inputs-model", **tree_config("regression", ("x", "y")))
    es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias=alias)
    with pytest.warns(ElasticsearchWarning, match=r"The input fields for new model \[other-inputs-model\] and for old"):
        es.ml.put_trained_model_alias(model_id="other-inputs-model", model_alias=alias, reassign=True)


def test_delete_alias(es, trees, alias):
    es.ml.put_trained_model_alias(model_id="a-regression-model-1", model_alias=alias)
    assert error_of(lambda: es.ml.delete_trained_model_alias(model_id="a-regression-model-0", model_alias=alias)) == (
        409, "status_exception", f"model_alias [{alias}] does not refer to provided model_id [a-regression-model-0]",
    )  # fmt: skip
    assert es.ml.delete_trained_model_alias(model_id="a-regression-model-1", model_alias=alias) == {"acknowledged": True}
    assert error_of(lambda: es.ml.get_trained_models(model_id=alias))[0] == 404
    assert error_of(lambda: es.ml.delete_trained_model_alias(model_id="a-regression-model-1", model_alias=alias)) == (
        404, "status_exception", f"model_alias [{alias}] could not be found",
    )  # fmt: skip


def test_deleting_a_model_takes_its_aliases(es, trees, alias):
    es.ml.put_trained_model(model_id="short-lived-model", **tree_config("regression"))
    es.ml.put_trained_model_alias(model_id="short-lived-model", model_alias=alias)
    es.ml.delete_trained_model(model_id="short-lived-model")
    assert error_of(lambda: es.ml.get_trained_models(model_id=alias))[0] == 404
    es.ml.put_trained_model_alias(model_id="a-regression-model-0", model_alias=alias)  # a free name again


@pytest.fixture(scope="module")
def classifiers(node, es, traced_classifier):
    """One deployed classifier, one uploaded but not deployed."""
    deployed = uploaded(node.url, traced_classifier, "alias-classifier-a")
    start(es, deployed)
    return deployed, uploaded(node.url, traced_classifier, "alias-classifier-b")


def test_a_deployed_models_alias_moves_only_to_a_deployed_model(node, es, classifiers, alias, traced_classifier):
    deployed, idle = classifiers
    es.ml.put_trained_model_alias(model_id=deployed, model_alias=alias)
    assert error_of(lambda: es.ml.put_trained_model_alias(model_id=idle, model_alias=alias, reassign=True)) == (
        400, "status_exception",
        f"cannot reassign model_alias [{alias}] to model [{idle}] from model [{deployed}] as it is not yet deployed",
    )  # fmt: skip
    es.ml.put_trained_model_alias(model_id=idle, model_alias=f"{alias}-idle")  # an alias no deployment uses: free
    es.ml.delete_trained_model_alias(model_id=idle, model_alias=f"{alias}-idle")

    successor = uploaded(node.url, traced_classifier, "alias-classifier-c")
    start(es, successor)
    try:
        es.ml.put_trained_model_alias(model_id=successor, model_alias=alias, reassign=True)
        assert infer(es, alias, ["a happy text"]) == infer(es, successor, ["a happy text"])
        [stats] = es.ml.get_trained_models_stats(model_id=alias)["trained_model_stats"]
        assert stats["model_id"] == successor and stats["deployment_stats"]["nodes"][0]["inference_count"] >= 1
    finally:
        es.ml.put_trained_model_alias(model_id=deployed, model_alias=alias, reassign=True)
        es.ml.stop_trained_model_deployment(model_id=successor)


def test_infer_through_an_alias(es, classifiers, alias):
    deployed, _ = classifiers
    es.ml.put_trained_model_alias(model_id=deployed, model_alias=alias)
    direct = infer(es, deployed, ["a happy text"])
    assert infer(es, alias, ["a happy text"]) == direct
    with pytest.warns(ElasticsearchWarning, match="deployment/_infer] is deprecated"):
        legacy = es.perform_request(
            "POST", f"/_ml/trained_models/{alias}/deployment/_infer", body={"docs": [{"text_field": "a happy text"}]},
            headers={"content-type": "application/json"},
        )  # fmt: skip
    assert legacy.body == direct[0]
    custom = es.perform_request(
        "POST", f"/_sidecar/custom/{alias}", body={"input": ["a happy text"]}, headers={"content-type": "application/json"}
    )
    assert [orjson.loads(result) for result in custom.body["result"]] == direct


def test_an_alias_of_a_model_that_is_not_deployed_is_not_served(es, classifiers, alias):
    _, idle = classifiers
    es.ml.put_trained_model_alias(model_id=idle, model_alias=alias)
    assert error_of(lambda: infer(es, alias, ["text"])) == (
        409, "status_exception",
        f"Model [{idle}] must be deployed to use. Please deploy with the start trained model deployment API.",
    )  # fmt: skip
