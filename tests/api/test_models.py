"""The model store API through the official client: the eland upload flow and every bad input's exact answer."""

import base64

import pytest
from elasticsearch import ApiError

from tests.support.deploy import error_of

NER_CONFIG = {
    "description": "tiny ner",
    "model_type": "pytorch",
    "inference_config": {
        "ner": {
            "tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": 64}},
            "classification_labels": ["O", "B_PER", "I_PER", "B_LOC", "I_LOC"],
        }
    },
    "input": {"field_names": ["text_field"]},
    "metadata": {"per_deployment_memory_bytes": 100, "per_allocation_memory_bytes": 200},
}




def put_config(es, model_id, config=NER_CONFIG):
    return es.perform_request("PUT", f"/_ml/trained_models/{model_id}", body=config, headers={"content-type": "application/json"}).body


def put_part(es, model_id, part, body):
    return es.perform_request("PUT", f"/_ml/trained_models/{model_id}/definition/{part}", body=body, headers={"content-type": "application/json"})


def part_body(data: bytes, total_length: int, total_parts: int):
    return {"definition": base64.b64encode(data).decode(), "total_definition_length": total_length, "total_parts": total_parts}


def test_put_returns_the_stored_config_with_defaults(es):
    config = put_config(es, "store-ner")
    assert list(config)[:9] == [
        "model_id", "model_type", "created_by", "version", "create_time", "model_size_bytes", "estimated_operations",
        "license_level", "description",
    ]  # fmt: skip
    assert config["created_by"] == "api_user"
    assert config["license_level"] == "platinum"
    assert config["location"] == {"index": {"name": ".ml-inference-native-000002"}}
    ner = config["inference_config"]["ner"]
    assert ner["vocabulary"] == {"index": ".ml-inference-native-000002"}
    assert ner["tokenization"]["bert"] == {
        "do_lower_case": True, "with_special_tokens": True, "max_sequence_length": 64, "truncate": "first", "span": -1,
    }  # fmt: skip
    assert config["metadata"] == NER_CONFIG["metadata"]


def test_get_lists_models_sorted_with_the_builtin(es):
    put_config(es, "store-aaa")
    listed = es.ml.get_trained_models()
    ids = [m["model_id"] for m in listed["trained_model_configs"]]
    assert ids == sorted(ids)
    assert "lang_ident_model_1" in ids and "store-aaa" in ids
    assert listed["count"] == len(ids)
    assert [m["model_id"] for m in es.ml.get_trained_models(model_id="store-a*")["trained_model_configs"]] == ["store-aaa"]
    assert es.ml.get_trained_models(model_id="nothing-*")["count"] == 0


def test_get_unknown_model_is_404(es):
    assert error_of(lambda: es.ml.get_trained_models(model_id="missing")) == (
        404, "resource_not_found_exception", "Could not find trained model [missing]",
    )  # fmt: skip
    assert error_of(lambda: es.ml.get_trained_models(model_id="nothing-*", allow_no_match=False))[0] == 404


def test_duplicate_id_is_400_already_exists(es):
    put_config(es, "store-dup")
    assert error_of(lambda: put_config(es, "store-dup")) == (
        400, "resource_already_exists_exception", "Trained machine learning model [store-dup] already exists",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("model_id", "reason"),
    [
        ("ABC", "Validation Failed: 1: Invalid model_id; 'ABC' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"),
        ("-abc", "Validation Failed: 1: Invalid model_id; '-abc' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; must start and end with alphanumeric;"),
        ("a" * 65, f"Validation Failed: 1: Invalid model_id; '{'a' * 65}' cannot contain more than 64 characters.;"),
    ],
)  # fmt: skip
def test_model_ids_are_validated_as_elasticsearch_does(es, model_id, reason):
    assert error_of(lambda: put_config(es, model_id)) == (400, "action_request_validation_exception", reason)


def test_inconsistent_body_id(es):
    assert error_of(lambda: put_config(es, "store-a", {**NER_CONFIG, "model_id": "store-b"})) == (
        400, "illegal_argument_exception",
        "Inconsistent model_id; 'store-b' specified in the body differs from 'store-a' specified as a URL argument",
    )  # fmt: skip


def test_vocabulary_on_creation_is_refused(es):
    config = {**NER_CONFIG, "inference_config": {"ner": {"vocabulary": {"index": "x"}}}}
    assert error_of(lambda: put_config(es, "store-vocab", config)) == (
        400, "illegal_argument_exception", "illegal setting [vocabulary] on inference model creation",
    )  # fmt: skip


def test_definition_parts_validation(es):
    put_config(es, "store-parts")
    good = part_body(b"abcd", 8, 2)
    assert error_of(lambda: put_part(es, "store-parts", 2, good)) == (
        400, "action_request_validation_exception", "Validation Failed: 1: [part] must be less than total_parts;",
    )  # fmt: skip
    assert error_of(lambda: put_part(es, "store-parts", 0, {**good, "total_parts": 0})) == (
        400, "action_request_validation_exception",
        "Validation Failed: 1: [total_parts] must be greater than 0;2: [part] must be less than total_parts;",
    )  # fmt: skip
    assert error_of(lambda: put_part(es, "store-parts", 0, {**good, "total_parts": 10001}))[2] == (
        "Validation Failed: 1: [total_parts] must be less than or equal to 10000;"
    )
    assert error_of(lambda: put_part(es, "store-parts", 0, {**good, "total_definition_length": 0}))[2] == (
        "Validation Failed: 1: [total_definition_length] must be greater than 0;"
    )
    assert error_of(lambda: put_part(es, "store-parts", "x", good)) == (400, "number_format_exception", 'For input string: "x"')
    assert error_of(lambda: put_part(es, "missing", 0, good)) == (404, "resource_not_found_exception", "Could not find trained model [missing]")


def test_bad_base64_is_a_400(es):
    put_config(es, "store-b64")
    status, kind, reason = error_of(lambda: put_part(es, "store-b64", 0, {"definition": "!!!!", "total_definition_length": 3, "total_parts": 1}))
    assert (status, kind) == (400, "x_content_parse_exception")
    # the name of PutTrainedModelDefinitionPartAction.Request's parser
    assert reason == "[put_trained_model_part_action] failed to parse field [definition]"


def test_duplicate_part_is_already_exists(es):
    put_config(es, "store-dup-part")
    put_part(es, "store-dup-part", 0, part_body(b"abcd", 8, 2))
    assert error_of(lambda: put_part(es, "store-dup-part", 0, part_body(b"abcd", 8, 2))) == (
        400, "resource_already_exists_exception", "Trained machine learning model chunked doc [store-dup-part][0] already exists",
    )  # fmt: skip


def test_vocabulary_upload_and_validation(es):
    put_config(es, "store-voc")
    path = "/_ml/trained_models/store-voc/vocabulary"
    headers = {"content-type": "application/json"}
    assert error_of(lambda: es.perform_request("PUT", path, body={"vocabulary": []}, headers=headers)) == (
        400, "action_request_validation_exception", "Validation Failed: 1: [vocabulary] must not be empty;",
    )  # fmt: skip
    assert error_of(lambda: es.perform_request("PUT", path, body={"vocabulary": ["a"], "scores": [1.0, 2.0]}, headers=headers))[2] == (
        "Validation Failed: 1: [scores] must have same length as [vocabulary];"
    )
    assert es.perform_request("PUT", path, body={"vocabulary": ["[PAD]", "a"]}, headers=headers).body == {"acknowledged": True}
    assert error_of(lambda: es.perform_request("PUT", path, body={"vocabulary": ["a"]}, headers=headers)) == (
        400, "resource_already_exists_exception", "Trained machine learning model [store-voc] vocabulary already exists",
    )  # fmt: skip


def test_definition_status_tells_whole_from_truncated(es):
    put_config(es, "store-status")
    status = lambda: es.ml.get_trained_models(model_id="store-status", include="definition_status")["trained_model_configs"][0]  # noqa: E731
    assert status()["fully_defined"] is False
    put_part(es, "store-status", 0, part_body(b"abcd", 8, 2))
    assert status()["fully_defined"] is False
    put_part(es, "store-status", 1, part_body(b"efgh", 8, 2))
    assert status()["fully_defined"] is True


def test_start_finds_missing_truncated_and_inconsistent_definitions(es):
    put_config(es, "store-nodef")
    start = lambda m: es.perform_request("POST", f"/_ml/trained_models/{m}/deployment/_start")  # noqa: E731
    assert error_of(lambda: start("store-nodef")) == (
        404, "resource_not_found_exception", "Could not find trained model definition [store-nodef]",
    )  # fmt: skip
    put_part(es, "store-nodef", 0, part_body(b"abcd", 8, 2))
    assert error_of(lambda: start("store-nodef")) == (
        400, "status_exception", "Model definition truncated. Unable to deserialize trained model definition [store-nodef]",
    )  # fmt: skip
    put_config(es, "store-incons")
    put_part(es, "store-incons", 0, part_body(b"abcd", 8, 2))
    put_part(es, "store-incons", 1, part_body(b"efgh", 9, 2))
    assert error_of(lambda: start("store-incons")) == (
        400, "status_exception",
        "[store-incons] [total_definition_length] must be the same in all model definition parts. The value [9] in "
        "model definition part [1] does not match the value [8] in part [0]. Unable to deploy model, please delete and "
        "recreate the model definition",
    )  # fmt: skip


def test_delete(es):
    put_config(es, "store-del")
    put_part(es, "store-del", 0, part_body(b"abcd", 4, 1))
    assert es.ml.delete_trained_model(model_id="store-del").body == {"acknowledged": True}
    assert error_of(lambda: es.ml.delete_trained_model(model_id="store-del"))[0] == 404
    put_config(es, "store-del")  # the id is free again and no old part remains
    assert es.ml.get_trained_models(model_id="store-del", include="definition_status")["trained_model_configs"][0]["fully_defined"] is False


def test_human_adds_readable_twins(es):
    put_config(es, "store-human")
    config = es.perform_request("GET", "/_ml/trained_models/store-human", params={"human": "true"}).body["trained_model_configs"][0]
    keys = list(config)
    assert keys.index("create_time_string") == keys.index("create_time") - 1
    assert config["model_size"] == "0b"


def test_the_builtin_model_cannot_be_deleted(es):
    assert error_of(lambda: es.ml.delete_trained_model(model_id="lang_ident_model_1")) == (
        400, "status_exception", "Unable to delete model [lang_ident_model_1] as it is required by machine learning",
    )  # fmt: skip


def _start_error(es, model_id):
    return error_of(lambda: es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_start"))


def _fully_defined(es, model_id):
    return es.ml.get_trained_models(model_id=model_id, include="definition_status")["trained_model_configs"][0]["fully_defined"]


def _truncated(model_id):
    return 400, "status_exception", f"Model definition truncated. Unable to deserialize trained model definition [{model_id}]"


@pytest.mark.parametrize(
    "model_id, parts",
    [
        ("lie-gap", [(0, b"abcdef", 9, 3), (2, b"ghi", 9, 3)]),  # part 1 missing, lengths still add up
        ("lie-last-only", [(9999, b"abcd", 4, 10000)]),  # only the last of 10000 parts
        ("lie-first-only", [(0, b"abcd", 4, 2)]),  # the whole length in part 0 of 2
    ],
)
def test_a_definition_with_missing_parts_is_truncated_however_its_lengths_add_up(es, model_id, parts):
    put_config(es, model_id)
    for part, data, total_length, total_parts in parts:
        put_part(es, model_id, part, part_body(data, total_length, total_parts))
    assert _fully_defined(es, model_id) is False
    assert _start_error(es, model_id) == _truncated(model_id)


def test_parts_that_disagree_on_total_parts_are_inconsistent(es):
    put_config(es, "lie-parts")
    for part, total_parts in ((0, 7), (1, 2), (2, 3)):
        put_part(es, "lie-parts", part, part_body(b"abc", 9, total_parts))
    assert _fully_defined(es, "lie-parts") is False
    assert _start_error(es, "lie-parts") == (
        400, "status_exception",
        "[lie-parts] [total_parts] must be the same in all model definition parts. The value [2] in model definition "
        "part [1] does not match the value [7] in part [0]. Unable to deploy model, please delete and recreate the "
        "model definition",
    )  # fmt: skip


@pytest.mark.parametrize(
    "field, value, kind",
    [
        ("total_definition_length", 2**63, "long (-9223372036854775808 - 9223372036854775807)"),
        ("total_parts", 2**31, "int (-2147483648 - 2147483647)"),
    ],
)
def test_numbers_out_of_javas_range_are_parse_errors(es, field, value, kind):
    model_id = f"store-range-{abs(value)}"
    put_config(es, model_id)
    with pytest.raises(ApiError) as caught:
        put_part(es, model_id, 0, {**part_body(b"abcd", 4, 1), field: value})
    assert caught.value.meta.status == 400
    error = caught.value.body["error"]
    assert (error["type"], error["reason"]) == (
        "x_content_parse_exception", f"[put_trained_model_part_action] failed to parse field [{field}]",
    )  # fmt: skip
    assert error["caused_by"]["reason"] == f"Numeric value ({value}) out of range of {kind}"


def test_a_whole_definition_at_javas_largest_long_is_stored_and_refused_as_truncated(es):
    put_config(es, "store-maxlong")
    put_part(es, "store-maxlong", 0, part_body(b"abcd", 2**63 - 1, 1))
    assert _start_error(es, "store-maxlong") == _truncated("store-maxlong")


def test_field_names_may_be_one_string(es):
    """ObjectParser reads a lone string where a string array is declared."""
    config = put_config(es, "store-one-field", {**NER_CONFIG, "input": {"field_names": "body"}})
    assert config["input"] == {"field_names": ["body"]}
    stored = es.ml.get_trained_models(model_id="store-one-field")["trained_model_configs"][0]
    assert stored["input"] == {"field_names": ["body"]}


TREE = {"trained_model": {"tree": {"feature_names": ["f"], "tree_structure": [{"node_index": 0, "leaf_value": 1.0}]}}}
TREE_CONFIG = {"input": {"field_names": ["f"]}, "inference_config": {"regression": {}}, "model_type": "tree_ensemble"}


def _gzipped(value) -> str:
    import gzip
    import json

    return base64.b64encode(gzip.compress(json.dumps(value).encode())).decode()


def test_put_never_echoes_the_definition(es):
    config = put_config(es, "store-tree", {**TREE_CONFIG, "definition": TREE})
    assert "definition" not in config and config["model_id"] == "store-tree"
    assert "definition" not in es.ml.get_trained_models(model_id="store-tree")["trained_model_configs"][0]
    shown = es.ml.get_trained_models(model_id="store-tree", include="definition")["trained_model_configs"][0]
    assert shown["definition"] == TREE
    compressed = put_config(es, "store-tree-gz", {**TREE_CONFIG, "compressed_definition": _gzipped(TREE)})
    assert "compressed_definition" not in compressed and "definition" not in compressed


def test_definition_and_compressed_definition_together_are_a_parse_error(es):
    call = lambda: put_config(es, "store-both", {**TREE_CONFIG, "definition": TREE, "compressed_definition": _gzipped(TREE)})  # noqa: E731
    with pytest.raises(ApiError) as caught:
        call()
    error = caught.value.body["error"]
    assert (caught.value.meta.status, error["type"]) == (400, "x_content_parse_exception")
    assert error["reason"] == "[trained_model_config] failed to parse field [compressed_definition]"
    assert error["caused_by"]["reason"] == "both [compressed_definition] and [definition] cannot be set."


def test_a_deferred_compressed_definition_needs_its_size(es):
    body = {**NER_CONFIG, "compressed_definition": _gzipped(TREE)}
    call = lambda params: es.perform_request(  # noqa: E731
        "PUT", "/_ml/trained_models/store-deferred", body=body, params=params, headers={"content-type": "application/json"}
    )
    assert error_of(lambda: call({"defer_definition_decompression": "true"})) == (
        400, "action_request_validation_exception",
        "Validation Failed: 1: when [defer_definition_decompression] is true and a compressed definition is provided, "
        "model_size_bytes must be set;",
    )  # fmt: skip
    config = es.perform_request(
        "PUT", "/_ml/trained_models/store-deferred", body={**body, "model_size_bytes": 1234},
        params={"defer_definition_decompression": "true"}, headers={"content-type": "application/json"},
    ).body  # fmt: skip
    assert "compressed_definition" not in config
    assert config["model_size_bytes"] == 1234
    assert config["location"] == {"index": {"name": ".ml-inference-native-000002"}}


def test_a_pytorch_model_refuses_a_definition_it_reads(es):
    """A pytorch definition comes in parts; one in the config, once read, describes another kind of model."""
    mismatch = (400, "status_exception", "model_type [pytorch] does not match the model definition type [tree_ensemble]")
    assert error_of(lambda: put_config(es, "store-pt-inline", {**NER_CONFIG, "definition": TREE})) == mismatch
    assert error_of(lambda: put_config(es, "store-pt-gz", {**NER_CONFIG, "compressed_definition": _gzipped(TREE)})) == mismatch
    not_gzip = {**NER_CONFIG, "compressed_definition": base64.b64encode(b"plain").decode()}
    assert error_of(lambda: put_config(es, "store-pt-plain", not_gzip)) == (
        400, "status_exception", "Failed to parse definition for [store-pt-plain]",
    )  # fmt: skip
    with pytest.raises(ApiError) as caught:
        put_config(es, "store-pt-empty", {**NER_CONFIG, "definition": {}})
    error = caught.value.body["error"]
    assert error["reason"] == "[trained_model_config] failed to parse field [definition]"
    assert error["caused_by"]["reason"] == "[trained_model] must not be null."
    bad_base64 = {**NER_CONFIG, "compressed_definition": "not base64!"}
    assert error_of(lambda: put_config(es, "store-pt-b64", bad_base64)) == (
        400, "x_content_parse_exception", "[trained_model_config] failed to parse field [compressed_definition]",
    )  # fmt: skip
    missing = es.ml.get_trained_models(model_id="store-pt-*", allow_no_match=True)["trained_model_configs"]
    assert missing == []


def _with_tokenization(tokenization):
    return {**NER_CONFIG, "inference_config": {"ner": {**NER_CONFIG["inference_config"]["ner"], "tokenization": tokenization}}}


def test_bert_ja_is_stored_and_refused_at_start_saying_why(es):
    config = put_config(es, "store-ja", _with_tokenization({"bert_ja": {"do_lower_case": False, "max_sequence_length": 64}}))
    assert config["inference_config"]["ner"]["tokenization"] == {"bert_ja": {
        "do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 64, "truncate": "first", "span": -1,
    }}  # fmt: skip
    status, kind, reason = error_of(lambda: es.ml.start_trained_model_deployment(model_id="store-ja"))
    assert (status, kind) == (400, "status_exception")
    assert reason.startswith("[bert_ja] tokenization cannot be deployed on this node: ") and "Kuromoji" in reason
    assert es.ml.get_trained_models_stats(model_id="store-ja")["trained_model_stats"][0].get("deployment_stats") is None


def test_byte_level_bpe_is_unknown_to_the_default_9_2(es):
    config = _with_tokenization({"byte_level_bpe": {"add_prefix_space": True}})
    assert error_of(lambda: put_config(es, "store-bpe", config)) == (
        400, "illegal_argument_exception", "unknown tokenization type [byte_level_bpe]",
    )  # fmt: skip


def test_a_pytorch_model_without_input_reads_the_input_field(es):
    """TrainedModelType.PYTORCH's default input, which Elasticsearch's own YAML tests infer through."""
    config = {key: value for key, value in NER_CONFIG.items() if key != "input"}
    assert put_config(es, "store-default-input", config)["input"] == {"field_names": ["input"]}
    [stored] = es.ml.get_trained_models(model_id="store-default-input")["trained_model_configs"]
    assert stored["input"] == {"field_names": ["input"]}
