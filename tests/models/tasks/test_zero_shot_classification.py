"""Zero-shot classification: pair rows per label, both scorings, config and update rules."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer
from tests.support.results import rounded

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] this example is about sport music . what a game".split()
NLI = ["contradiction", "Neutral", "ENTAILMENT"]  # any order and case: the indexes come from the config


def classifier(**config: Any):
    stored = validate_task_config("zero_shot_classification", {"classification_labels": NLI, **config})
    tokenizer = build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY})
    return TASKS["zero_shot_classification"](stored, tokenizer), stored


def tokens(task, window) -> list[str]:
    return [task.tokenizer.token(i) for i in window.ids]




def entry(name: str, probability: float) -> dict[str, Any]:
    return {"class_name": name, "class_probability": probability, "class_score": probability}


def test_one_pair_row_per_label_with_the_hypothesis_second():
    task, options = classifier(hypothesis_template="this is about {}")
    options = apply_update("zero_shot_classification", options, {"labels": ["sport", "music"]})
    prepared = task.preprocess("what a game", options)
    assert [tokens(task, row) for row in prepared.rows] == [
        ["[CLS]", "what", "a", "game", "[SEP]", "this", "is", "about", "sport", "[SEP]"],
        ["[CLS]", "what", "a", "game", "[SEP]", "this", "is", "about", "music", "[SEP]"],
    ]


def test_single_label_softmaxes_entailment_across_labels():
    task, options = classifier()
    options = apply_update("zero_shot_classification", options, {"labels": ["sport", "music", "news"]})
    prepared = task.preprocess("what a game", options)
    # columns: contradiction, neutral, entailment
    output = np.array([[9.0, 0.0, np.log(6)], [0.0, 9.0, np.log(3)], [0.0, 0.0, 0.0]], dtype=np.float32)
    result = task.postprocess(prepared, output, options)
    assert json.dumps(rounded(result)) == json.dumps(
        {
            "predicted_value": "sport",
            "top_classes": [entry("sport", 0.6), entry("music", 0.3), entry("news", 0.1)],
            "prediction_probability": 0.6,
        }
    )


def test_multi_label_softmaxes_entailment_against_contradiction_per_label():
    task, options = classifier(labels=["sport", "music"], multi_label=True)
    options = apply_update("zero_shot_classification", options, {"results_field": "topic"})
    prepared = task.preprocess("what a game", options)
    output = np.array([[0.0, 5.0, np.log(3)], [np.log(4), 5.0, 0.0]], dtype=np.float32)
    result = task.postprocess(prepared, output, options)
    assert json.dumps(rounded(result)) == json.dumps(
        {"topic": "sport", "top_classes": [entry("sport", 0.75), entry("music", 0.2)], "prediction_probability": 0.75}
    )


def test_truncation_is_reported():
    task, options = classifier(labels=["sport"], tokenization={"bert": {"max_sequence_length": 8}})
    prepared = task.preprocess("what a game what a game", options)
    result = task.postprocess(prepared, np.zeros((1, 3), dtype=np.float32), options)
    assert list(result)[-1] == "is_truncated"


@pytest.mark.parametrize(
    ("shape", "reason"),
    [
        ((1, 3), "Expected exactly [2] values in zero shot classification result; got [1]"),
        ((2, 2), "Expected exactly [3] values in inner zero shot classification result; got [2]"),
    ],
)
def test_output_shape_is_checked(shape, reason):
    task, options = classifier(labels=["sport", "music"])
    prepared = task.preprocess("what a game", options)
    with pytest.raises(EsError) as error:
        task.postprocess(prepared, np.zeros(shape, dtype=np.float32), options)
    assert (error.value.status, error.value.reason) == (409, reason)


def test_labels_are_needed_at_infer_time():
    task, options = classifier()
    with pytest.raises(EsError) as error:
        task.preprocess("what a game", options)
    assert (error.value.status, error.value.reason) == (400, "zero_shot_classification requires non-empty [labels]")
    with pytest.raises(EsError) as error:
        apply_update("zero_shot_classification", options, {"multi_label": True})
    assert error.value.reason == (
        "stored configuration has no [labels] defined, supplied inference_config update must supply [labels]"
    )


def test_entailment_and_contradiction_are_needed_to_deploy():
    stored = validate_task_config("zero_shot_classification", {"classification_labels": ["entailment"] * 2 + ["neutral"]})
    with pytest.raises(EsError) as error:
        TASKS["zero_shot_classification"](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY}))
    assert (error.value.status, error.value.reason) == (
        400, "zero_shot_classification requires [entailment] and [contradiction] in classification_labels"
    )


def test_stored_config():
    stored = validate_task_config("zero_shot_classification", {"classification_labels": NLI, "labels": ["a"]})
    assert list(stored) == ["tokenization", "classification_labels", "multi_label", "hypothesis_template", "labels"]
    assert (stored["multi_label"], stored["hypothesis_template"]) == (False, "This example is {}.")


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({}, "illegal_argument_exception", "Required [classification_labels]"),
        ({"classification_labels": ["entailment", "neutral"]}, "status_exception",
         "[classification_labels] must contain exactly the three values [contradiction, entailment, neutral]"),
        ({"classification_labels": ["entailment", "Neutral", "Other"]}, "status_exception",
         "[classification_labels] must contain exactly the three values [contradiction, entailment, neutral]. "
         "Invalid labels [other]"),
        ({"classification_labels": NLI, "labels": []}, "status_exception", "[labels] must not be empty"),
        ({"classification_labels": NLI, "multi_label": "yes"}, "x_content_parse_exception",
         "[zero_shot_classification] failed to parse field [multi_label]"),
        ({"classification_labels": NLI, "tokenization": {"bert": {"truncate": "none", "span": 4}}}, "status_exception",
         "[zero_shot_classification] does not support windowing long text sequences; configured span [4]"),
        ({"classification_labels": NLI, "question": "?"}, "x_content_parse_exception",
         "[zero_shot_classification] unknown field [question]"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("zero_shot_classification", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"labels": []}, "[labels] must not be empty"),
        # This parser names every key it was sent, the known ones too.
        ({"labels": ["a"], "hypothesis_template": "{}"}, "Unrecognized fields [labels, hypothesis_template]."),
    ],
)
def test_invalid_updates(update, reason):
    _, options = classifier(labels=["x"])
    with pytest.raises(EsError) as error:
        apply_update("zero_shot_classification", options, update)
    assert (error.value.status, error.value.reason) == (400, reason)


def test_a_real_nli_model(infer):
    import torch

    from tests.support.models import NLI_LABELS

    update = {"labels": ["game", "music", "news"]}
    config = {"classification_labels": list(NLI_LABELS)}
    run = infer("xlm_roberta", "zero_shot_classification", "what a great game", config, update)
    entailment = torch.tensor(np.stack(run.outputs))[:, NLI_LABELS.index("entailment")].double()
    expected = torch.softmax(entailment, dim=0).tolist()
    scores = {c["class_name"]: c["class_probability"] for c in run.result["top_classes"]}
    assert [scores[label] for label in update["labels"]] == pytest.approx(expected, abs=1e-6)
    assert run.result["predicted_value"] == update["labels"][int(np.argmax(expected))]
    hypothesis = [run.task.tokenizer.token(i) for i in run.rows[0].ids]
    assert hypothesis[-4:] == ["▁is", "▁game", ".", "</s>"]
