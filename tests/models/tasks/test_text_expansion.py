"""Text expansion: a pooled weight per vocabulary token to `{token: weight}`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] city paris e.g. big town".split()


def expander(**config):
    stored = validate_task_config("text_expansion", config)
    return TASKS["text_expansion"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})), stored


def test_positive_weights_heaviest_first_with_dots_written_as_underscores():
    task, options = expander()
    prepared = task.preprocess("paris city", options)
    weights = np.array([[0, 0, 0, 0, 0, 0.5, 1.25, 0.1, 0.0, -2.0]], dtype=np.float32)
    result = task.postprocess(prepared, weights, options)
    # 0.1 is a float32: written with the shortest digits that read back as that float, as Java does
    assert json.dumps(result) == json.dumps({"predicted_value": {"paris": 1.25, "city": 0.5, "e__g__": 0.1}})


def test_rows_are_merged_by_their_maximum_and_ties_keep_vocabulary_order():
    task, options = expander(tokenization={"bert": {"truncate": "none", "span": 1, "max_sequence_length": 4}})
    options = apply_update("text_expansion", options, {"results_field": "tokens"})
    prepared = task.preprocess("paris city big town", options)
    assert len(prepared.rows) > 1
    weights = np.zeros((len(prepared.rows), len(VOCABULARY)), dtype=np.float32)
    weights[0, [5, 8]] = 0.75
    weights[1, [6, 8]] = [2.0, 0.5]
    result = task.postprocess(prepared, weights, options)
    assert json.dumps(result) == json.dumps({"tokens": {"paris": 2.0, "city": 0.75, "big": 0.75}})


def test_truncation_is_reported():
    task, options = expander(tokenization={"bert": {"max_sequence_length": 3}})
    result = task.postprocess(task.preprocess("paris city", options), np.ones((1, 10), dtype=np.float32), options)
    assert list(result) == ["predicted_value", "is_truncated"]


def test_config_and_updates():
    assert list(validate_task_config("text_expansion", {"results_field": "x"})) == ["tokenization", "results_field"]
    with pytest.raises(EsError, match=r"^\[text_expansion\] unknown field \[num_top_classes\]$"):
        validate_task_config("text_expansion", {"num_top_classes": 1})
    with pytest.raises(EsError, match=r"^Unrecognized fields \[top_k\]\.$"):
        apply_update("text_expansion", validate_task_config("text_expansion", {}), {"top_k": 3})


def test_a_real_masked_lm_max_pooled(infer):
    """A plain masked LM gives `[L, vocab]` per row: Elasticsearch takes each token's maximum."""
    run = infer("bert", "text_expansion", "the city of paris")
    pooled = run.outputs[0].max(axis=0)
    expected = {run.task.tokenizer.token(i).replace(".", "__"): float(pooled[i]) for i in np.flatnonzero(pooled > 0)}
    weights = run.result["predicted_value"]
    assert weights == pytest.approx(expected, abs=1e-6)
    assert list(weights.values()) == sorted(weights.values(), reverse=True)
