"""Text embedding: the model's pooled row becomes the result as it is."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] the cat sat".split()


def embedder(**config):
    stored = validate_task_config("text_embedding", config)
    return TASKS["text_embedding"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})), stored


def test_the_row_is_the_vector():
    task, options = embedder(embedding_size=3)
    prepared = task.preprocess("the cat", options)
    output = np.array([[0.1, -0.25, 3.0]], dtype=np.float32)
    result = task.postprocess(prepared, output, options)
    assert json.dumps(result) == json.dumps({"predicted_value": [float(np.float32(0.1)), -0.25, 3.0]})
    assert all(type(value) is float for value in result["predicted_value"])


def test_results_field_and_truncation():
    task, options = embedder(tokenization={"bert": {"max_sequence_length": 3}})
    options = apply_update("text_embedding", options, {"results_field": "vector"})
    prepared = task.preprocess("the cat sat", options)
    result = task.postprocess(prepared, np.ones((1, 2), dtype=np.float32), options)
    assert json.dumps(result) == json.dumps({"vector": [1.0, 1.0], "is_truncated": True})


def test_stored_config():
    stored = validate_task_config("text_embedding", {"embedding_size": 384, "results_field": "v"})
    assert json.dumps(stored) == json.dumps(
        {
            "tokenization": {"bert": {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512,
                                      "truncate": "first", "span": -1}},
            "results_field": "v",
            "embedding_size": 384,
        }
    )


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({"embedding_size": 0}, "status_exception",
         "[embedding_size] must be a number greater than 0; configured size [0]"),
        ({"embedding_size": 1.5}, "x_content_parse_exception",
         "[text_embedding] failed to parse field [embedding_size]"),
        ({"tokenization": {"bert": {"truncate": "none", "span": 8}}}, "status_exception",
         "[text_embedding] does not support windowing long text sequences; configured span [8]"),
        ({"labels": []}, "x_content_parse_exception", "[text_embedding] unknown field [labels]"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("text_embedding", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"embedding_size": 3}, "Unrecognized fields [embedding_size]."),
        ({"tokenization": {"bert": {"truncate": "none", "span": 2}}}, None),
    ],
)
def test_updates(update, reason):
    _, config = embedder()
    if reason is None:
        assert apply_update("text_embedding", config, update)["tokenization"]["bert"]["truncate"] == "none"
        return
    with pytest.raises(EsError) as error:
        apply_update("text_embedding", config, update)
    assert (error.value.status, error.value.reason) == (400, reason)
