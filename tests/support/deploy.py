"""Helpers for tests that deploy: upload a traced model, start it with the seed's parameter names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch

from sidecar.importer.trace import TracedModel
from sidecar.importer.upload import upload


def uploaded(url: str, traced: TracedModel, model_id: str | None = None) -> str:
    """Upload `traced` (optionally under another id) and return its id."""
    if model_id is not None:
        traced = TracedModel(model_id, traced.definition, traced.config, traced.vocabulary)
    upload(url, traced, progress=False)
    return traced.model_id


def start(es: Elasticsearch, model_id: str, **params: Any) -> dict[str, Any]:
    """POST _start with the seed's (8.0) parameter names, which the 9.x client's typed method does not send."""
    query = {key: str(value) for key, value in params.items()}
    return es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_start", params=query).body


def started(es: Elasticsearch, model_id: str, **params: Any) -> dict[str, Any]:
    """`start`'s answer without its wrapper: `allocation` (8.0-8.2) or `assignment` (8.3 and later)."""
    [body] = start(es, model_id, **params).values()
    return body


def infer(es: Elasticsearch, model_id: str, texts: list[str], **body: Any) -> list[dict[str, Any]]:
    docs = [{"text_field": text} for text in texts]
    response = es.perform_request(
        "POST",
        f"/_ml/trained_models/{model_id}/_infer",
        body={"docs": docs, **body},
        headers={"content-type": "application/json"},
    )
    return response.body["inference_results"]


def error_of(call: Any) -> tuple[int, str, str]:
    """(status, error type, reason) of the ApiError `call` must raise."""
    with pytest.raises(ApiError) as caught:
        call()
    body = caught.value.body
    return caught.value.meta.status, body["error"]["type"], body["error"]["reason"]


# Elasticsearch's own pass-through test model config and vocabulary (3rd_party_deployment.yml)
PASS_THROUGH = {
    "input": {"field_names": ["text_field"]},
    "model_type": "pytorch",
    "inference_config": {"pass_through": {"tokenization": {"bert": {"with_special_tokens": False}}}},
}
WORDS = {"vocabulary": ["[PAD]", "[UNK]", "these", "are", "my", "words"]}


def uploaded_definition(url: str, model_id: str, definition: Path) -> str:
    """Upload any TorchScript file as a pass-through BERT-tokenized model, the way Elasticsearch's tests do."""
    return uploaded(url, TracedModel(model_id, definition, PASS_THROUGH, WORDS))
