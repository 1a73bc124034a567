"""Pass through: the model's output, untouched, always 2-D."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] the cat".split()


def passer(**config):
    stored = validate_task_config("pass_through", config)
    return TASKS["pass_through"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})), stored


def test_per_token_output_of_the_first_row():
    task, options = passer()
    prepared = task.preprocess("the cat", options)
    output = np.arange(8, dtype=np.float32).reshape(1, 4, 2) / 4
    result = task.postprocess(prepared, output, options)
    assert json.dumps(result) == json.dumps({"predicted_value": [[0.0, 0.25], [0.5, 0.75], [1.0, 1.25], [1.5, 1.75]]})


def test_pooled_output_stays_2d_and_truncation_is_reported():
    task, options = passer(tokenization={"bert": {"max_sequence_length": 3}})
    options = apply_update("pass_through", options, {"results_field": "raw"})
    result = task.postprocess(task.preprocess("the cat the", options), np.array([[0.5, -1.0]], dtype=np.float32), options)
    assert json.dumps(result) == json.dumps({"raw": [[0.5, -1.0]], "is_truncated": True})


def test_config():
    assert list(validate_task_config("pass_through", {"results_field": "x"})) == ["tokenization", "results_field"]
    with pytest.raises(EsError, match=r"^\[pass_through\] unknown field \[embedding_size\]$"):
        validate_task_config("pass_through", {"embedding_size": 3})


def test_a_real_encoder(infer):
    run = infer("roberta", "pass_through", "the city of paris")
    hidden = run.result["predicted_value"]
    assert np.allclose(np.array(hidden), run.outputs[0], atol=1e-6)
    assert np.array(hidden).shape == (len(run.rows[0].ids), 32)
