"""Wrong-typed values at every field of the model, definition part and vocabulary PUTs: always a 4xx in
Elasticsearch's envelope, never a 500.

A deterministic generator: each valid body is walked to every field and array element at every depth, and each
is replaced in turn by every value of `WRONG`; fields a parser declares but the body leaves out are added too.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

from tests.support.deploy import error_of

WRONG: list[Any] = [
    None, True, 0, -1, 1.5, 2**31, 2**63, 8100338488034896741, "", "-5s", "x" * 300, [], [1], [[]], [{}], {}, {"a": 1},
    {"a": {"b": []}},
]  # fmt: skip

MODEL = {
    "description": "fuzzed",
    "model_type": "pytorch",
    "tags": ["a-tag"],
    "metadata": {"k": "v"},
    "input": {"field_names": ["text_field"]},
    "inference_config": {
        "text_classification": {
            "tokenization": {"bert": {"do_lower_case": True, "max_sequence_length": 64, "truncate": "first", "span": -1}},
            "classification_labels": ["a", "b"],
            "num_top_classes": 2,
            "results_field": "out",
        }
    },
    "default_field_map": {"a": "b"},
    "prefix_strings": {"ingest": "i: ", "search": "s: "},
    "model_size_bytes": 10,
    "estimated_operations": 1,
    "platform_architecture": "linux-x86_64",
}
# TrainedModelConfig's other declared fields, which the body above leaves out
MODEL_ABSENT = (
    "model_id", "created_by", "version", "create_time", "definition", "compressed_definition",
    "estimated_heap_memory_usage_bytes", "license_level", "location", "model_package",
)  # fmt: skip
PART = {"definition": base64.b64encode(b"abcd").decode(), "total_definition_length": 4, "total_parts": 1}
VOCABULARY = {"vocabulary": ["[PAD]", "[UNK]"], "merges": ["a b"], "scores": [0.5, 1.0]}


def variants(body: Any, absent: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(where, body with one value replaced) for every field and element of `body`, and each absent field."""
    for path in list(_paths(body)) + [(name,) for name in absent]:
        for wrong in WRONG:
            yield ".".join(map(str, path)) + f"={wrong!r}"[:40], _replaced(body, path, wrong)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, inner in items:
        yield (*prefix, key)
        yield from _paths(inner, (*prefix, key))


def _replaced(body: Any, path: tuple[Any, ...], wrong: Any) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = wrong
    return copy


def put(es: Elasticsearch, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    """Send exactly these JSON bytes (Python's encoder writes integers of any size)."""
    try:
        response = es.perform_request("PUT", path, body=json.dumps(body).encode(), headers={"content-type": "application/json"})
        return response.meta.status, response.body
    except ApiError as error:
        return error.meta.status, error.body


def assert_client_error(where: str, status: int, body: dict[str, Any]) -> None:
    assert status < 500, f"{where}: {status} {body}"
    if status >= 400:
        error = body["error"]
        assert body["status"] == status, where
        assert error["type"] and error["reason"], where
        assert error["root_cause"][0]["type"], where


def test_the_reported_body_is_a_parse_error_not_a_500(es):
    body = {"input": "-5s", "definition": 8100338488034896741}
    headers = {"content-type": "application/json"}
    assert error_of(lambda: es.perform_request("PUT", "/_ml/trained_models/reported", body=body, headers=headers)) == (
        400, "x_content_parse_exception", "[trained_model_config] input doesn't support values of type: VALUE_STRING",
    )  # fmt: skip


def test_nested_parse_errors_are_wrapped_in_the_field_that_holds_them(es):
    body = {**MODEL, "input": {"field_names": [{"a": 1}]}}
    status, response = put(es, "/_ml/trained_models/nested-input", body)
    assert status == 400
    error = response["error"]
    assert (error["type"], error["reason"]) == ("x_content_parse_exception", "[trained_model_config] failed to parse field [input]")
    assert error["caused_by"]["reason"] == "[trained_model_config_input] failed to parse field [field_names]"


@pytest.mark.parametrize("field, value, token", [("total_parts", True, "VALUE_BOOLEAN"), ("definition", 5, "VALUE_NUMBER")])
def test_a_part_field_of_the_wrong_type_is_named(es, field, value, token):
    put(es, "/_ml/trained_models/part-types", MODEL)
    status, response = put(es, "/_ml/trained_models/part-types/definition/0", {**PART, field: value})
    assert status == 400
    assert response["error"]["reason"] == f"[put_trained_model_part_action] {field} doesn't support values of type: {token}"


def test_model_put_never_answers_5xx(es):
    for number, (where, body) in enumerate(variants(MODEL, MODEL_ABSENT)):
        assert_client_error(where, *put(es, f"/_ml/trained_models/fuzz-{number}", body))


def test_definition_part_put_never_answers_5xx(es):
    put(es, "/_ml/trained_models/fuzz-parts", MODEL)
    for where, body in variants({**PART, "unknown": 1}):
        assert_client_error(where, *put(es, "/_ml/trained_models/fuzz-parts/definition/0", body))


def test_vocabulary_put_never_answers_5xx(es):
    for number, (where, body) in enumerate(variants(VOCABULARY)):
        model_id = f"fuzz-vocabulary-{number}"  # a fresh model each time: a stored vocabulary would answer 400 early
        put(es, f"/_ml/trained_models/{model_id}", MODEL)
        assert_client_error(where, *put(es, f"/_ml/trained_models/{model_id}/vocabulary", body))
