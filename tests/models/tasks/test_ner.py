"""NER: hand-made logits through a real tokenizer to Elasticsearch's result JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.models.tokenization import build_tokenizer
from tests.support.results import rounded

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] hi my name is josh smith and i live in ber ##lin ! Josh Berlin".split()
O, B_MISC, I_MISC, B_PER, I_PER, B_ORG, I_ORG, B_LOC, I_LOC = range(9)


def ner(lower_case: bool = True, **settings: Any):
    config = validate_task_config("ner", {"tokenization": {"bert": {"do_lower_case": lower_case, **settings}}})
    task = TASKS["ner"](config, build_tokenizer(config["tokenization"], {"vocabulary": VOCABULARY}))
    return task, config


def logits(task, prepared, tags: dict[str, list[tuple[int, float]]], labels: int = 9) -> np.ndarray:
    """`O` wins everywhere except at the named tokens, where each listed label gets
    that weight (its probability is weight / (weight + labels - 1) when alone)."""
    row = prepared.rows[0]
    names = [task.tokenizer.token(i) for i in row.ids]
    out = np.zeros((1, len(row.ids) + 2, labels), dtype=np.float32)  # padded, as in a batch
    out[0, :, O] = np.log(24)
    for name, weights in tags.items():
        position = names.index(name)
        out[0, position, O] = 0
        for label, weight in weights:
            out[0, position, label] = np.log(weight)
    return out


def run(task, options, text: str, tags: dict[str, list[tuple[int, float]]]) -> str:
    prepared = task.preprocess(text, options)
    body = task.postprocess(prepared, logits(task, prepared, tags), options)
    return json.dumps(rounded(body), ensure_ascii=False)




def expect(**body: Any) -> str:
    return json.dumps(body, ensure_ascii=False)


def entity(text: str, name: str, probability: float, start: int, end: int) -> dict[str, Any]:
    return {"entity": text, "class_name": name, "class_probability": probability, "start_pos": start, "end_pos": end}


def test_entities_are_whole_words_with_averaged_sub_token_probabilities():
    task, options = ner()
    text = "Hi my name is Josh Smith and I live in Berlin!"
    # "Berlin" is ber ##lin: B_LOC 0.75 and 0.5 average to 0.625 (averaging logits would give 0.634).
    tags = {"josh": [(B_PER, 24)], "smith": [(I_PER, 24)], "ber": [(B_LOC, 24)], "##lin": [(B_LOC, 8)]}
    assert run(task, options, text, tags) == expect(
        predicted_value="Hi my name is [Josh Smith](PER&Josh+Smith) and I live in [Berlin](LOC&Berlin)!",
        entities=[entity("josh smith", "PER", 0.75, 14, 24), entity("berlin", "LOC", 0.625, 39, 45)],
    )


def test_iob_grouping():
    task, options = ner()
    text = "josh smith and i live"
    # B after B splits; I after O starts an entity; I of another class starts one too.
    tags = {"josh": [(B_PER, 24)], "smith": [(B_PER, 24)], "i": [(I_PER, 24)], "live": [(I_LOC, 24)]}
    assert run(task, options, text, tags) == expect(
        predicted_value="[josh](PER&josh) [smith](PER&smith) and [i](PER&i) [live](LOC&live)",
        entities=[
            entity("josh", "PER", 0.75, 0, 4),
            entity("smith", "PER", 0.75, 5, 10),
            entity("i", "PER", 0.75, 15, 16),
            entity("live", "LOC", 0.75, 17, 21),
        ],
    )


def test_entity_score_is_the_mean_over_words():
    task, options = ner()
    tags = {"josh": [(B_PER, 24)], "smith": [(I_PER, 8)]}
    result = json.loads(run(task, options, "josh smith", tags))
    assert result["entities"][0]["class_probability"] == pytest.approx((0.75 + 0.5) / 2, abs=1e-6)


def test_positions_are_utf16_and_unknown_words_are_kept():
    task, options = ner()
    assert run(task, options, "😀 Josh", {"josh": [(B_PER, 24)]}) == expect(
        predicted_value="😀 [Josh](PER&Josh)", entities=[entity("josh", "PER", 0.75, 3, 7)]
    )


def test_cased_models_keep_the_case_of_the_entity():
    task, options = ner(lower_case=False)
    assert run(task, options, "hi Josh", {"Josh": [(B_PER, 24)]}) == expect(
        predicted_value="hi [Josh](PER&Josh)", entities=[entity("Josh", "PER", 0.75, 3, 7)]
    )


def test_no_entities_gives_the_text_back():
    task, options = ner()
    assert run(task, options, "Hi  my name!", {}) == expect(predicted_value="Hi  my name!", entities=[])


def test_truncated_input_keeps_whole_words_and_says_so():
    task, options = ner(max_sequence_length=5)
    options = apply_update("ner", options, {"results_field": "tags"})
    # The window ends after "ber"; the entity still spans the whole word, as in Elasticsearch.
    assert run(task, options, "josh in Berlin today", {"ber": [(B_LOC, 24)]}) == expect(
        tags="josh in [Berlin](LOC&Berlin) today", entities=[entity("berlin", "LOC", 0.75, 8, 14)], is_truncated=True
    )


def test_hyphenated_labels_in_any_order():
    config = validate_task_config("ner", {"classification_labels": ["B-PER", "I-PER", "O"]})
    task = TASKS["ner"](config, build_tokenizer(config["tokenization"], {"vocabulary": VOCABULARY}))
    prepared = task.preprocess("Josh", config)
    output = np.zeros((1, 3, 3), dtype=np.float32)
    output[0, :, 2] = 5
    output[0, 1] = [5, 0, 0]
    result = task.postprocess(prepared, output, config)
    assert [(e["entity"], e["class_name"]) for e in result["entities"]] == [("Josh", "PER")]


def test_label_count_must_match_the_model():
    task, options = ner()
    prepared = task.preprocess("josh", options)
    with pytest.raises(EsError) as error:
        task.postprocess(prepared, np.zeros((1, 3, 5), dtype=np.float32), options)
    assert (error.value.status, error.value.reason) == (409, "Expected exactly [9] values in ner result; got [5]")


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        (["O", "ORG"], "Validation Failed: 1: classification label [ORG] is not an entity I-O-B tag.;"),
        (
            ["O", "B_PER", "B_PER"],
            "Validation Failed: 1: the classification label [B_PER] is duplicated in the list [O, B_PER, B_PER];",
        ),
    ],
)
def test_labels_are_checked_when_the_deployment_starts(labels, reason):
    config = validate_task_config("ner", {"classification_labels": labels})
    with pytest.raises(EsError) as error:
        TASKS["ner"](config, build_tokenizer(config["tokenization"], {"vocabulary": VOCABULARY}))
    assert (error.value.status, error.value.type, error.value.reason) == (400, "validation_exception", reason)


def test_stored_config():
    config = {"tokenization": {"bert": {"max_sequence_length": 64, "do_lower_case": True}}, "results_field": "x",
              "classification_labels": ["O", "B_PER", "I_PER"]}
    assert json.dumps(validate_task_config("ner", config)) == json.dumps(
        {
            "tokenization": {"bert": {"do_lower_case": True, "with_special_tokens": True, "max_sequence_length": 64,
                                      "truncate": "first", "span": -1}},
            "classification_labels": ["O", "B_PER", "I_PER"],
            "results_field": "x",
        }
    )
    assert list(validate_task_config("ner", {"classification_labels": []})) == ["tokenization"]


@pytest.mark.parametrize(
    ("config", "type_", "reason"),
    [
        ({"classification_labels": ["O", "PER", "X"]}, "status_exception",
         "[ner] only allows IOB tokenization tagging for classification labels; provided [PER, X]"),
        ({"classification_labels": ["B_PER", "I_PER"]}, "status_exception",
         "[ner] only allows IOB tokenization tagging for classification labels; missing outside label [O]"),
        ({"tokenization": {"bert": {"truncate": "none", "span": 16}}}, "status_exception",
         "[ner] does not support windowing long text sequences; configured span [16]"),
        ({"classification_labels": "O"}, "x_content_parse_exception",
         "[ner] failed to parse field [classification_labels]"),
        ({"num_top_classes": 2}, "x_content_parse_exception", "[ner] unknown field [num_top_classes]"),
        ({"vocabulary": {"index": "x"}}, "status_exception",
         "illegal setting [vocabulary] on inference model creation"),
    ],
)
def test_invalid_configs(config, type_, reason):
    with pytest.raises(EsError) as error:
        validate_task_config("ner", config)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


def test_updates():
    config = validate_task_config("ner", {"tokenization": {"bert": {"truncate": "none"}}})
    options = apply_update("ner", config, {"results_field": "out", "tokenization": {"bert": {"truncate": "second"}}})
    assert options["results_field"] == "out"
    assert options["tokenization"]["bert"]["truncate"] == "second"
    assert "results_field" not in config and config["tokenization"]["bert"]["truncate"] == "none"


@pytest.mark.parametrize(
    ("update", "reason"),
    [
        ({"tokenization": {"bert": {"span": 8}}},
         "[ner] does not support windowing long text sequences; configured span [8]"),
        ({"num_top_classes": 1, "foo": 2}, "Unrecognized fields [num_top_classes, foo]."),
        ({"tokenization": {"xlm": {}}},
         "unknown tokenization type expecting one of [bert, byte_level_bpe, deberta_v2, mpnet, roberta, xlm_roberta] got [xlm]"),
        ({"tokenization": {"mpnet": {"truncate": "first"}}},
         "Tokenization config of type [bert] can not be updated with a request of type [mpnet]"),
    ],
)
def test_invalid_updates(update, reason):
    config = validate_task_config("ner", {"tokenization": {"bert": {"truncate": "none"}}})
    with pytest.raises(EsError) as error:
        apply_update("ner", config, update)
    assert (error.value.status, error.value.type, error.value.reason) == (400, "status_exception", reason)
