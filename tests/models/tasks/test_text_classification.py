"""Text classification: hand-made logits to Elasticsearch's result JSON, config rules."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer
from tests.support.results import rounded

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] what a great day bad".split()
LABELS = ["negative", "neutral", "positive"]


def classifier(**config: Any):
    stored = validate_task_config("text_classification", {"classification_labels": LABELS, **config})
    tokenizer = build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})
    return TASKS["text_classification"](stored, tokenizer), stored


def classify(task, options: dict[str, Any], text: str, *rows: list[float]) -> dict[str, Any]:
    return task.postprocess(task.preprocess(text, options), np.array(rows, dtype=np.float32), options)


def entry(name: str, probability: float) -> dict[str, Any]:
    return {"class_name": name, "class_probability": probability, "class_score": probability}


def same(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Same keys in the same order, numbers equal to 6 decimals."""
    assert json.dumps(rounded(actual)) == json.dumps(rounded(expected))




def test_top_class_without_top_classes_by_default():
    task, options = classifier()
    # softmax([0, ln 2, ln 5]) = [1/8, 2/8, 5/8]
    result = classify(task, options, "what a great day", [0.0, np.log(2), np.log(5)])
    same(result, {"predicted_value": "positive", "prediction_probability": 0.625})


def test_all_classes_sorted_when_num_top_classes_is_negative():
    task, options = classifier(num_top_classes=-1)
    result = classify(task, options, "what a bad day", [np.log(5), 0.0, np.log(2)])
    same(
        result,
        {
            "predicted_value": "negative",
            "top_classes": [entry("negative", 0.625), entry("positive", 0.25), entry("neutral", 0.125)],
            "prediction_probability": 0.625,
        },
    )


def test_num_top_classes_limits_and_ties_keep_label_order():
    task, options = classifier(num_top_classes=2)
    result = classify(task, options, "what", [0.0, 0.0, 0.0])
    same(
        result,
        {"predicted_value": "negative", "top_classes": [entry("negative", 1 / 3), entry("neutral", 1 / 3)],
         "prediction_probability": 1 / 3},
    )


def test_windows_are_averaged_after_softmax():
    task, options = classifier(tokenization={"bert": {"truncate": "none", "span": 0, "max_sequence_length": 4}})
    prepared = task.preprocess("what a great day", options)
    assert len(prepared.rows) == 2
    output = np.array([[0.0, 0.0, np.log(2)], [np.log(2), 0.0, 0.0]], dtype=np.float32)
    result = task.postprocess(prepared, output, options)
    # rows: [1/4, 1/4, 1/2] and [1/2, 1/4, 1/4] -> mean [3/8, 1/4, 3/8]; the tie goes to the first label
    same(result, {"predicted_value": "negative", "prediction_probability": 0.375})


def test_results_field_and_truncation():
    task, options = classifier(tokenization={"bert": {"max_sequence_length": 3}})
    options = apply_update("text_classification", options, {"results_field": "mood", "num_top_classes": 1})
    result = classify(task, options, "what a great day", [0.0, np.log(3), 0.0])
    same(
        result,
        {
            "mood": "neutral",
            "top_classes": [entry("neutral", 0.6)],
            "prediction_probability": 0.6,
            "is_truncated": True,
        },
    )


def test_label_count_must_match_the_model():
    task, options = classifier()
    with pytest.raises(EsError) as error:
        classify(task, options, "what", [0.0, 1.0])
    assert (error.value.status, error.value.type) == (409, "status_exception")
    assert error.value.reason == "Expected exactly [3] values in text classification result; got [2]"


def test_stored_config_prints_num_top_classes():
    stored = validate_task_config("text_classification", {"classification_labels": ["a", "b"], "results_field": "r"})
    assert json.dumps(stored) == json.dumps(
        {
            "tokenization": {"bert": {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512,
                                      "truncate": "first", "span": -1}},
            "classification_labels": ["a", "b"],
            "num_top_classes": 0,
            "results_field": "r",
        }
    )


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({}, "status_exception", "[text_classification] requires at least 2 [classification_labels]; provided null"),
        ({"classification_labels": ["too-few"]}, "status_exception",
         "[text_classification] requires at least 2 [classification_labels]; provided [too-few]"),
        ({"classification_labels": ["a", "b"], "num_top_classes": "2"}, "x_content_parse_exception",
         "[text_classification] failed to parse field [num_top_classes]"),
        ({"classification_labels": ["a", 1]}, "x_content_parse_exception",
         "[text_classification] failed to parse field [classification_labels]"),
        ({"classification_labels": ["a", "b"], "tokenization": {"bert": {"truncate": "first", "span": 2}}},
         "illegal_argument_exception", "[span] must not be provided when [truncate] is [first]"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("text_classification", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


def test_updates():
    _, config = classifier(tokenization={"bert": {"truncate": "none", "span": 16}})
    options = apply_update(
        "text_classification", config, {"classification_labels": ["bad", "meh", "good"], "num_top_classes": 3}
    )
    assert options["classification_labels"] == ["bad", "meh", "good"] and options["num_top_classes"] == 3
    # Elasticsearch resets the span when an update sets truncate to none.
    assert apply_update("text_classification", config, {"tokenization": {"bert": {"truncate": "none", "span": 4}}})[
        "tokenization"
    ]["bert"]["span"] == -1
    assert apply_update("text_classification", config, {"tokenization": {"bert": {"span": 4}}})["tokenization"]["bert"][
        "span"
    ] == 4
    assert config["classification_labels"] == LABELS and config["num_top_classes"] == 0


@pytest.mark.parametrize(
    ("update", "type_", "reason"),
    [
        ({"classification_labels": ["a", "b"]}, "status_exception",
         "The number of [classification_labels] the model is defined with [3] "
         "does not match the number in the update [2]"),
        ({"tokenization": {"bert": {"truncate": "first"}}}, "illegal_argument_exception",
         "[span] must not be provided when [truncate] is [first]"),
        ({"tokenization": {"bert": {"span": 17, "truncate": "second"}}}, "illegal_argument_exception",
         "[span] must not be provided when [truncate] is [second]"),
        ({"tokenization": {"bert": {"span": 600}}}, "illegal_argument_exception",
         "[span] provided [600] must not be greater than [max_sequence_length] provided [512]"),
        ({"tokenization": {"bert": {"truncate": "all"}}}, "illegal_argument_exception",
         "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization.Truncate.ALL"),
        ({"num_top_classes": True}, "x_content_parse_exception",
         "[text_classification] failed to parse field [num_top_classes]"),
        ({"top_k": 2}, "status_exception", "Unrecognized fields [top_k]."),
    ],
)
def test_invalid_updates(update, type_, reason):
    _, config = classifier(tokenization={"bert": {"truncate": "none", "span": 16}})
    with pytest.raises(EsError) as error:
        apply_update("text_classification", config, update)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)
