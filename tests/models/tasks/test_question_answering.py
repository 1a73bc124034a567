"""Question answering: start and end logits to Elasticsearch's answer JSON, windows, rules."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] who lives in paris john smith and mary the city".split()


def answerer(update: dict[str, Any] | None = None, **config: Any):
    stored = validate_task_config("question_answering", config)
    options = apply_update("question_answering", stored, {"question": "who", **(update or {})})
    tokenizer = build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})
    return TASKS["question_answering"](stored, tokenizer), options


def logits(task, prepared, starts: dict[str, float], ends: dict[str, float]) -> np.ndarray:
    """`[rows, L, 2]`, zero except the named tokens, which get log(weight); padded by two, as a batch is."""
    width = max(len(row.ids) for row in prepared.rows) + 2
    out = np.zeros((len(prepared.rows), width, 2), dtype=np.float32)
    for r, row in enumerate(prepared.rows):
        names = [task.tokenizer.token(i) for i in row.ids]
        for column, weights in enumerate((starts, ends)):
            for name, weight in weights.items():
                if name in names[row.second_start :]:
                    out[r, names.index(name, row.second_start), column] = np.log(weight)
    return out


def answer(task, options, text: str, starts: dict[str, float], ends: dict[str, float]) -> dict[str, Any]:
    prepared = task.preprocess(text, options)
    return task.postprocess(prepared, logits(task, prepared, starts, ends), options)


def test_the_best_span_with_elasticsearchs_scoring():
    task, options = answerer()
    # kept positions: [CLS] and the 5 text tokens; "john" gets 6 of 11 for starts, "smith" 6 of 11 for ends
    result = answer(task, options, "john smith lives in paris", {"john": 6}, {"smith": 6})
    assert json.dumps({**result, "prediction_probability": round(result["prediction_probability"], 6)}) == json.dumps(
        {"predicted_value": "john smith", "start_offset": 0, "end_offset": 10, "prediction_probability": 0.297521}
    )  # 6/11 * 6/11


def test_top_classes_rank_every_span_and_ties_keep_the_earliest():
    task, options = answerer({"num_top_classes": 2, "results_field": "answer"})
    result = answer(task, options, "john smith lives in paris", {"john": 6}, {"smith": 6})
    assert list(result) == ["answer", "start_offset", "end_offset", "top_classes", "prediction_probability"]
    assert [(c["answer"], c["start_offset"], c["end_offset"]) for c in result["top_classes"]] == [
        ("john smith", 0, 10),
        ("john", 0, 4),
    ]
    assert list(result["top_classes"][0]) == ["answer", "start_offset", "end_offset", "score"]
    assert result["top_classes"][1]["score"] == pytest.approx(6 / 121, abs=1e-6)


def test_max_answer_length_bounds_the_span():
    task, options = answerer({"max_answer_length": 1})
    result = answer(task, options, "john smith lives in paris", {"john": 6}, {"smith": 6})
    assert result["predicted_value"] == "john"


def test_offsets_are_utf16_into_the_original_text():
    task, options = answerer(tokenization={"bert": {"do_lower_case": True}})
    result = answer(task, options, "😀 Mary  lives", {"mary": 6}, {"mary": 6})
    assert (result["predicted_value"], result["start_offset"], result["end_offset"]) == ("Mary", 3, 7)


def test_long_texts_are_read_in_windows_that_repeat_the_question():
    task, options = answerer(tokenization={"bert": {"max_sequence_length": 7, "truncate": "none", "span": 1}})
    prepared = task.preprocess("the city john smith lives in paris", options)
    texts = [[task.tokenizer.token(i) for i in row.ids] for row in prepared.rows]
    assert texts == [
        ["[CLS]", "who", "[SEP]", "the", "city", "john", "[SEP]"],
        ["[CLS]", "who", "[SEP]", "john", "smith", "lives", "[SEP]"],
        ["[CLS]", "who", "[SEP]", "lives", "in", "paris", "[SEP]"],
    ]
    result = task.postprocess(prepared, logits(task, prepared, {"lives": 6}, {"in": 6}), options)
    assert (result["predicted_value"], result["start_offset"], result["end_offset"]) == ("lives in", 20, 28)
    assert "is_truncated" not in result


def test_truncation_is_reported():
    # `first` would cut the question; `second` cuts the text
    task, options = answerer(tokenization={"bert": {"max_sequence_length": 6, "truncate": "second"}})
    result = answer(task, options, "john smith lives in paris", {"john": 6}, {"smith": 6})
    assert (result["predicted_value"], result["is_truncated"]) == ("john smith", True)


def test_the_graph_output_is_split_per_row():
    task, _ = answerer()
    starts, ends = np.arange(6).reshape(2, 3), -np.arange(6).reshape(2, 3)
    rows = task.split_rows(np.stack([starts, ends]).astype(np.float32))
    assert [row.tolist() for row in rows] == [[[0, 0], [1, -1], [2, -2]], [[3, -3], [4, -4], [5, -5]]]


def test_a_question_is_needed():
    stored = validate_task_config("question_answering", {})
    task = TASKS["question_answering"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY}))
    with pytest.raises(EsError) as error:
        task.preprocess("john", stored)
    assert (error.value.status, error.value.reason) == (
        400, "please provide configuration update for question_answering task including the desired [question]"
    )
    with pytest.raises(EsError) as error:
        apply_update("question_answering", stored, {"num_top_classes": 1})
    assert (error.value.type, error.value.reason) == ("illegal_argument_exception", "[question] must not be null.")


def test_stored_config():
    stored = validate_task_config("question_answering", {"max_answer_length": 30, "results_field": "a"})
    assert list(stored) == ["num_top_classes", "max_answer_length", "tokenization", "results_field"]
    assert (stored["num_top_classes"], stored["max_answer_length"]) == (0, 30)


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({"num_top_classes": -1}, "status_exception",
         "[num_top_classes] must be greater than or equal to [0]; provided [-1]"),
        ({"max_answer_length": 0}, "status_exception", "[max_answer_length] must be greater than [0]; provided [0]"),
        ({"question": "who?"}, "x_content_parse_exception", "[question_answering] unknown field [question]"),
        ({"max_answer_length": 1.5}, "x_content_parse_exception",
         "[question_answering] failed to parse field [max_answer_length]"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("question_answering", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"question": "who", "labels": ["a"]}, "Unrecognized fields [question, labels]."),
        ({"question": "who", "max_answer_length": -3}, "[max_answer_length] must be greater than [0]; provided [-3]"),
    ],
)
def test_invalid_updates(update, reason):
    with pytest.raises(EsError) as error:
        apply_update("question_answering", validate_task_config("question_answering", {}), update)
    assert (error.value.status, error.value.reason) == (400, reason)


def test_a_real_question_answering_model(infer):
    import torch

    config = {"num_top_classes": 3, "max_answer_length": 4}
    run = infer("deberta_v2", "question_answering", "john smith lives in paris", config, {"question": "who lives"})
    row, logits_ = run.rows[0], torch.tensor(run.outputs[0]).double()
    first, size = row.second_start, len(row.ids)
    allowed = torch.tensor([i == 0 or first <= i < size - 1 for i in range(size)])
    starts, ends = (torch.softmax(logits_[:, k].masked_fill(~allowed, -10000.0), dim=0) for k in (0, 1))
    scores = {
        (i, j): float(starts[i] * ends[j]) for i in range(first, size - 1) for j in range(i, min(i + 4, size - 1))
    }
    best = sorted(scores.items(), key=lambda item: -item[1])[:3]
    assert [c["score"] for c in run.result["top_classes"]] == pytest.approx([score for _, score in best], abs=1e-4)
    (start, end), _ = best[0]
    text = "john smith lives in paris"
    assert run.result["predicted_value"] == text[row.offsets[start][0] : row.offsets[end][1]]
