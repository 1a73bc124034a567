"""Fill mask: hand-made logits to Elasticsearch's JSON, the mask rules, a real masked LM."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] paris is the capital of france london rome".split()
PARIS, LONDON, ROME = 5, 11, 12
TEXT = "paris is the [MASK] of france"


def filler(**config: Any):
    stored = validate_task_config("fill_mask", config)
    return TASKS["fill_mask"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})), stored


def logits(task, prepared, weights: dict[int, float]) -> np.ndarray:
    """Vocabulary logits at every position; at the mask, token `i` gets log(weight)."""
    row = prepared.rows[0]
    out = np.full((1, len(row.ids), len(VOCABULARY)), -30.0, dtype=np.float32)
    position = row.ids.index(task.tokenizer.mask_token_id)
    for token, weight in weights.items():
        out[0, position, token] = np.log(weight)
    return out


def fill(task, options, text: str = TEXT, weights: dict[int, float] | None = None) -> dict[str, Any]:
    prepared = task.preprocess(text, options)
    return task.postprocess(prepared, logits(task, prepared, weights or {PARIS: 1, LONDON: 6, ROME: 3}), options)


def same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    assert json.dumps(actual) == json.dumps(expected, ensure_ascii=True)


def entry(name: str, probability: float) -> dict[str, Any]:
    return {"class_name": name, "class_probability": probability, "class_score": probability}


def test_top_five_by_default_and_the_sequence_last():
    task, options = filler()
    result = fill(task, options)
    assert list(result) == ["predicted_value", "top_classes", "prediction_probability", "predicted_value_sequence"]
    assert result["predicted_value"] == "london"
    assert result["predicted_value_sequence"] == "paris is the london of france"
    assert [c["class_name"] for c in result["top_classes"]] == ["london", "rome", "paris", "[PAD]", "[UNK]"]
    assert result["top_classes"][0] == entry("london", pytest.approx(0.6, abs=1e-6))
    assert result["prediction_probability"] == pytest.approx(0.6, abs=1e-6)


def test_num_top_classes_zero_keeps_only_the_prediction_and_results_field_names_the_sequence():
    task, options = filler(num_top_classes=0, results_field="word")
    result = fill(task, options)
    assert list(result) == ["word", "prediction_probability", "word_sequence"]


def test_all_classes_with_minus_one_and_truncation():
    task, options = filler(tokenization={"bert": {"max_sequence_length": 6}})
    options = apply_update("fill_mask", options, {"num_top_classes": -1})
    result = fill(task, options, "the [MASK] of france is paris")
    assert len(result["top_classes"]) == len(VOCABULARY)
    assert list(result)[-1] == "is_truncated" and result["is_truncated"] is True


@pytest.mark.parametrize(
    ("text", "status", "type_", "reason"),
    [
        ("paris is the capital", 400, "validation_exception",
         "Validation Failed: 1: no [MASK] token could be found in the input;"),
        ("[MASK] is the [MASK]", 400, "status_exception", "only one [MASK] token should exist in the input"),
    ],
)
def test_exactly_one_mask(text, status, type_, reason):
    task, options = filler()
    with pytest.raises(EsError) as error:
        task.preprocess(text, options)
    assert (error.value.status, error.value.type, error.value.reason) == (status, type_, reason)


def test_mask_truncated_away_and_mask_missing_from_vocabulary():
    task, options = filler(tokenization={"bert": {"max_sequence_length": 4}})
    prepared = task.preprocess("paris is the capital [MASK]", options)
    with pytest.raises(EsError) as error:
        task.postprocess(prepared, np.zeros((1, 4, len(VOCABULARY)), dtype=np.float32), options)
    assert (error.value.status, error.value.reason) == (500, "mask token id [4] not found in the tokenization")

    stored = validate_task_config("fill_mask", {})
    task = TASKS["fill_mask"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY[:4] + ["x"]}))
    with pytest.raises(EsError) as error:
        task.postprocess(task.preprocess("x [MASK]", stored), np.zeros((1, 4, 5), dtype=np.float32), stored)
    assert (error.value.status, error.value.reason) == (
        409,
        "The token id for the mask token [MASK] is not known in the tokenizer. "
        "Check the vocabulary contains the mask token",
    )


def test_stored_config_writes_the_mask_token():
    stored = validate_task_config("fill_mask", {"tokenization": {"roberta": {}}, "mask_token": "<mask>"})
    assert list(stored) == ["tokenization", "num_top_classes", "mask_token"]
    assert (stored["num_top_classes"], stored["mask_token"]) == (5, "<mask>")


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({"mask_token": "<mask>"}, "illegal_argument_exception",
         "Mask token requested was [<mask>] but must be [[MASK]] for this model"),
        ({"tokenization": {"bert": {"truncate": "none", "span": 8}}}, "status_exception",
         "[fill_mask] does not support windowing long text sequences; configured span [8]"),
        ({"num_top_classes": "5"}, "x_content_parse_exception", "[fill_mask] failed to parse field [num_top_classes]"),
        ({"labels": []}, "x_content_parse_exception", "[fill_mask] unknown field [labels]"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("fill_mask", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"mask_token": "[MASK]"}, "Unrecognized fields [mask_token]."),
        ({"tokenization": {"bert": {"span": 2}}},
         "[fill_mask] does not support windowing long text sequences; configured span [2]"),
    ],
)
def test_invalid_updates(update, reason):
    stored = validate_task_config("fill_mask", {"tokenization": {"bert": {"truncate": "none"}}})
    with pytest.raises(EsError) as error:
        apply_update("fill_mask", stored, update)
    assert (error.value.status, error.value.reason) == (400, reason)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_a_real_masked_lm(infer, family):
    import torch

    mask = {"bert": "[MASK]", "roberta": "<mask>"}[family]
    run = infer(family, "fill_mask", f"the company is in {mask} today", {"num_top_classes": 3})
    row = run.rows[0]
    position = row.ids.index(run.task.tokenizer.mask_token_id)
    probabilities = torch.softmax(torch.from_numpy(run.outputs[0][position]).double(), dim=-1)
    top = torch.topk(probabilities, 3)
    words = [run.task.tokenizer.decode(run.task.tokenizer.token(int(i))) for i in top.indices]
    assert [c["class_name"] for c in run.result["top_classes"]] == words
    assert [c["class_probability"] for c in run.result["top_classes"]] == pytest.approx(top.values.tolist(), abs=1e-4)
    assert run.result["predicted_value_sequence"] == f"the company is in {words[0]} today"
