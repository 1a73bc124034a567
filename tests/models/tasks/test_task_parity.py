"""Each task's parity criterion: when a reduced-precision answer counts as the fp32 answer, and the reason when not."""

from __future__ import annotations

from typing import Any

from sidecar.models.tasks import TASKS, validate_task_config
from sidecar.models.tokenization import build_tokenizer

VOCABULARY = "[PAD] [UNK] [CLS] [SEP] [MASK] what a great day bad".split()


def task(name: str, **config: Any):
    stored = validate_task_config(name, config)
    return TASKS[name](stored, build_tokenizer(stored["tokenization"], {"vocabulary": VOCABULARY}))


def classes(label: str, *probabilities: tuple[str, float]) -> dict[str, Any]:
    top = [{"class_name": n, "class_probability": p, "class_score": p} for n, p in probabilities]
    return {"predicted_value": label, "top_classes": top, "prediction_probability": probabilities[0][1]}


def test_embeddings_need_a_cosine_of_0_9999():
    embedding = task("text_embedding")
    assert embedding.parity({"predicted_value": [1.0, 0.0]}, {"predicted_value": [1.0, 0.01]}) is None
    assert embedding.parity({"predicted_value": [1.0, 0.0]}, {"predicted_value": [1.0, 0.02]}) == "cosine 0.999800 < 0.9999"


def test_classes_need_the_same_top_label_and_probabilities_within_1e_3():
    classifier = task("text_classification", classification_labels=["a", "b"])
    reference = classes("a", ("a", 0.6), ("b", 0.4))
    assert classifier.parity(reference, classes("a", ("a", 0.6009), ("b", 0.3991))) is None
    assert classifier.parity(reference, classes("a", ("a", 0.602), ("b", 0.398))) == "a probability differs by 0.002 (> 0.001)"
    assert classifier.parity(reference, classes("b", ("b", 0.5), ("a", 0.5))) == "top label [b] instead of [a]"


def test_entities_must_be_the_same_whatever_their_probabilities():
    ner = task("ner")
    entity = {"entity": "day", "class_name": "MISC", "class_probability": 0.5, "start_pos": 13, "end_pos": 16}
    reference = {"predicted_value": "", "entities": [entity]}
    assert ner.parity(reference, {"predicted_value": "", "entities": [{**entity, "class_probability": 0.4}]}) is None
    assert ner.parity(reference, {"predicted_value": "", "entities": []}) == "entities [] instead of [('day', 'MISC', 13, 16)]"


def test_fill_mask_needs_the_same_top_token():
    fill = task("fill_mask")
    assert fill.parity({"predicted_value": "day"}, {"predicted_value": "day"}) is None
    assert fill.parity({"predicted_value": "day"}, {"predicted_value": "bad"}) == "top token [bad] instead of [day]"


def test_sparse_weights_within_1e_2_a_missing_token_weighing_0():
    expansion = task("text_expansion")
    assert expansion.parity({"predicted_value": {"a": 1.0, "b": 0.005}}, {"predicted_value": {"a": 1.009}}) is None
    why = expansion.parity({"predicted_value": {"a": 1.0}}, {"predicted_value": {"a": 1.0, "b": 0.02}})
    assert why == "a token's weight differs by 0.02 (> 0.01)"


def test_probe_documents_ask_for_a_full_answer():
    [(text, options)] = task("text_classification", classification_labels=["a", "b"]).probe_docs(["what a day"])
    assert (text, options["num_top_classes"]) == ("what a day", -1)
    [(text, _)] = task("fill_mask").probe_docs(["what a great day"])
    assert text == "what a [MASK] day"
