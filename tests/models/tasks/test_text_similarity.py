"""Text similarity: the cross-encoder's raw score, windows combined by max or mean."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] is it big the city of paris london".split()


def scorer(update: dict[str, Any] | None = None, **config: Any):
    stored = validate_task_config("text_similarity", config)
    options = apply_update("text_similarity", stored, {"text": "is it big", **(update or {})})
    return TASKS["text_similarity"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})), options


def test_the_query_comes_first_and_the_raw_score_is_the_result():
    task, options = scorer()
    prepared = task.preprocess("the city of paris", options)
    assert [task.tokenizer.token(i) for i in prepared.rows[0].ids] == [
        "[CLS]", "is", "it", "big", "[SEP]", "the", "city", "of", "paris", "[SEP]"
    ]  # fmt: skip
    result = task.postprocess(prepared, np.array([[3.5]], dtype=np.float32), options)
    assert json.dumps(result) == json.dumps({"predicted_value": 3.5})


@pytest.mark.parametrize(("function", "expected"), [("max", 4.0), ("MEAN", 2.5)])
def test_windows_are_combined(function, expected):
    task, options = scorer(
        {"span_score_combination_function": function, "results_field": "score"},
        tokenization={"bert": {"max_sequence_length": 9, "truncate": "none", "span": 0}},
    )
    prepared = task.preprocess("the city of paris london", options)
    assert len(prepared.rows) == 2
    result = task.postprocess(prepared, np.array([[1.0], [4.0]], dtype=np.float32), options)
    assert json.dumps(result) == json.dumps({"score": expected})


def test_truncation_is_reported():
    task, options = scorer(tokenization={"bert": {"max_sequence_length": 7, "truncate": "second"}})
    prepared = task.preprocess("the city of paris", options)
    result = task.postprocess(prepared, np.array([[-1.25]], dtype=np.float32), options)
    assert json.dumps(result) == json.dumps({"predicted_value": -1.25, "is_truncated": True})


def test_one_value_per_row():
    task, options = scorer()
    prepared = task.preprocess("paris", options)
    with pytest.raises(EsError) as error:
        task.postprocess(prepared, np.zeros((1, 2), dtype=np.float32), options)
    assert (error.value.status, error.value.reason) == (409, "Expected exactly [1] value in text_similarity result; got [2]")


def test_a_text_is_needed():
    stored = validate_task_config("text_similarity", {})
    task = TASKS["text_similarity"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY}))
    with pytest.raises(EsError) as error:
        task.preprocess("paris", stored)
    assert (error.value.status, error.value.reason) == (
        400, "please provide configuration update for text_similarity task including the desired [text]"
    )


def test_stored_config():
    stored = validate_task_config("text_similarity", {"span_score_combination_function": "Mean"})
    assert list(stored) == ["tokenization", "span_score_combination_function"]
    assert stored["span_score_combination_function"] == "mean"
    assert validate_task_config("text_similarity", {})["span_score_combination_function"] == "max"


ENUM = "org.elasticsearch.xpack.core.ml.inference.trainedmodel.TextSimilarityConfig.SpanScoreFunction"


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({"span_score_combination_function": "sum"}, "illegal_argument_exception", f"No enum constant {ENUM}.SUM"),
        ({"text": "x"}, "x_content_parse_exception", "[text_similarity] unknown field [text]"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("text_similarity", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


@pytest.mark.parametrize(
    ("update", "type_", "reason"),
    [
        ({"results_field": "x"}, "illegal_argument_exception", "[text]" + " must not be null."),
        ({"text": "a", "span_score_combination_function": "min"}, "illegal_argument_exception",
         f"No enum constant {ENUM}.MIN"),
        ({"text": "a", "top_k": 1}, "status_exception", "Unrecognized fields [text, top_k]."),
    ],
)
def test_invalid_updates(update, type_, reason):
    with pytest.raises(EsError) as error:
        apply_update("text_similarity", validate_task_config("text_similarity", {}), update)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


def test_a_real_cross_encoder(infer):
    config = {"tokenization": {"mpnet": {"max_sequence_length": 12, "truncate": "none", "span": 2}}}
    run = infer("mpnet", "text_similarity", "the city of paris is big and old", config, {"text": "is it big"})
    assert len(run.rows) > 1
    assert run.result["predicted_value"] == pytest.approx(max(float(out[0]) for out in run.outputs), abs=1e-6)
    first = [run.task.tokenizer.token(i) for i in run.rows[0].ids]
    assert first[:6] == ["<s>", "is", "it", "big", "</s>", "</s>"] and first[-1] == "</s>"
