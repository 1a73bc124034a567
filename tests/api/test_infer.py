"""`_infer` in both forms against real worker processes: results equal the models run directly."""

import numpy as np
import pytest
import torch
from elasticsearch import ApiError, ElasticsearchWarning

from tests.support.deploy import error_of, infer

SENTENCES = ["the film was wonderful", "john smith works for acme in london", "a terrible , boring book"]




def test_classification_equals_the_hugging_face_model(es, deployed_classifier, tiny_classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    results = infer(es, deployed_classifier, SENTENCES, inference_config={"text_classification": {"num_top_classes": -1}})
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).eval()
    for text, result in zip(SENTENCES, results):
        with torch.no_grad():
            probabilities = model(**tokenizer(text, return_tensors="pt")).logits.softmax(-1)[0].numpy()
        labels = [model.config.id2label[i] for i in range(len(probabilities))]
        assert list(result) == ["predicted_value", "top_classes", "prediction_probability"]
        assert result["predicted_value"] == labels[int(probabilities.argmax())]
        by_label = {c["class_name"]: c["class_probability"] for c in result["top_classes"]}
        assert by_label == pytest.approx(dict(zip(labels, probabilities.tolist())), abs=1e-4)


def test_top_classes_only_when_asked(es, deployed_classifier):
    [result] = infer(es, deployed_classifier, ["good"])
    assert list(result) == ["predicted_value", "prediction_probability"]


def test_ner_gives_entities_with_offsets_into_the_text(es, deployed_ner):
    text = "John Smith lives in London ."
    [result] = infer(es, deployed_ner, [text])
    assert list(result)[:2] == ["predicted_value", "entities"]
    for entity in result["entities"]:
        assert text.lower()[entity["start_pos"] : entity["end_pos"]] == entity["entity"].lower()
        assert entity["class_name"] in ("PER", "LOC", "ORG", "MISC")
    if not result["entities"]:
        assert result["predicted_value"] == text


def test_embeddings_equal_sentence_transformers(es, deployed_minilm, minilm_dir):
    from sentence_transformers import SentenceTransformer

    texts = ["Elasticsearch is a search engine", "The weather is lovely today", "short"]
    results = infer(es, deployed_minilm, texts)
    expected = SentenceTransformer(str(minilm_dir), device="cpu").encode(texts, normalize_embeddings=True)
    for result, vector in zip(results, expected):
        got = np.array(result["predicted_value"])
        assert got.shape == vector.shape
        assert float(got @ vector / np.linalg.norm(got) / np.linalg.norm(vector)) >= 0.999


def test_legacy_route_refuses_several_docs(es, deployed_classifier):
    call = lambda: es.perform_request(  # noqa: E731
        "POST", f"/_ml/trained_models/{deployed_classifier}/deployment/_infer",
        body={"docs": [{"text_field": "a"}, {"text_field": "b"}]}, headers={"content-type": "application/json"},
    )  # fmt: skip
    assert error_of(call) == (400, "validation_exception", "Validation Failed: 1: multiple documents are not supported;")


def test_missing_field_and_non_string(es, deployed_classifier):
    """A document's failure fails the whole request, in NlpInferenceInput's words, even beside a good document."""
    post = lambda docs: es.perform_request(  # noqa: E731
        "POST", f"/_ml/trained_models/{deployed_classifier}/_infer", body={"docs": docs}, headers={"content-type": "application/json"}
    )
    missing = (400, "status_exception", "Input field [text_field] does not exist in the source document")
    assert error_of(lambda: post([{"other": "x"}])) == missing
    assert error_of(lambda: post([{"text_field": "good"}, {"other": "x"}])) == missing
    not_text = (400, "status_exception", "Input value [42] for field [text_field] must be a string")
    assert error_of(lambda: post([{"text_field": 42}])) == not_text
    assert error_of(lambda: post([]))[0:2] == (400, "action_request_validation_exception")


def _legacy_infer(es, model_id, docs):
    return es.perform_request(
        "POST", f"/_ml/trained_models/{model_id}/deployment/_infer",
        body={"docs": docs}, headers={"content-type": "application/json"},
    )  # fmt: skip


def test_legacy_route_is_deprecated_from_8_3(es, deployed_classifier):
    """The official client turns the Warning header into an ElasticsearchWarning, as with a real 9.x cluster."""
    with pytest.warns(ElasticsearchWarning) as caught:
        response = _legacy_infer(es, deployed_classifier, [{"text_field": "good"}])
    assert list(response.body) == ["predicted_value", "prediction_probability"]
    assert [str(w.message) for w in caught] == [
        "[POST /_ml/trained_models/{model_id}/deployment/_infer] is deprecated! "
        "Use [POST /_ml/trained_models/{model_id}/_infer] instead."
    ]
    assert response.meta.headers["warning"].startswith('299 Elasticsearch-9.2.0-unknown "[POST ')
    assert "warning" not in {k.lower() for k in _infer_headers(es, deployed_classifier)}


def test_the_deprecated_routes_errors_carry_the_warning_too(es, deployed_classifier):
    with pytest.raises(ApiError) as caught:
        _legacy_infer(es, deployed_classifier, [{"other": "x"}])
    assert caught.value.meta.status == 400
    assert caught.value.body["error"]["reason"] == "Input field [text_field] does not exist in the source document"
    assert caught.value.meta.headers["warning"] == (
        '299 Elasticsearch-9.2.0-unknown "[POST /_ml/trained_models/{model_id}/deployment/_infer] is deprecated! '
        'Use [POST /_ml/trained_models/{model_id}/_infer] instead."'
    )


def _infer_headers(es, model_id):
    return es.perform_request(
        "POST", f"/_ml/trained_models/{model_id}/_infer",
        body={"docs": [{"text_field": "good"}]}, headers={"content-type": "application/json"},
    ).meta.headers  # fmt: skip
    assert error_of(lambda: post([{"text_field": "x"}] * 1001))[2] == (
        "Validation Failed: 1: the number of documents [1001] exceeds the maximum of [1000];"
    )


def test_unknown_and_undeployed_models(es, node, traced_classifier):
    from tests.support.deploy import uploaded

    assert error_of(lambda: infer(es, "nobody", ["x"])) == (404, "resource_not_found_exception", "Could not find trained model [nobody]")
    model_id = uploaded(node.url, traced_classifier, "never-deployed")
    assert error_of(lambda: infer(es, model_id, ["x"])) == (
        409, "status_exception", f"Model [{model_id}] must be deployed to use. Please deploy with the start trained model deployment API.",
    )  # fmt: skip


def test_inference_config_overrides(es, deployed_classifier):
    [result] = infer(es, deployed_classifier, ["good"], inference_config={"text_classification": {"results_field": "label", "num_top_classes": 1}})
    assert list(result) == ["label", "top_classes", "prediction_probability"]
    assert len(result["top_classes"]) == 1
    status, kind, _ = error_of(lambda: infer(es, deployed_classifier, ["good"], inference_config={"ner": {}}))
    assert (status, kind) == (400, "status_exception")


def test_many_docs_keep_their_order(es, deployed_classifier):
    texts = [f"{w} film" for w in ("good", "bad", "great", "awful") * 25]
    results = infer(es, deployed_classifier, texts)
    singles = {t: infer(es, deployed_classifier, [t])[0] for t in set(texts)}
    assert [r["predicted_value"] for r in results] == [singles[t]["predicted_value"] for t in texts]
    for text, result in zip(texts, results):
        assert result["prediction_probability"] == pytest.approx(singles[text]["prediction_probability"], abs=1e-5)
