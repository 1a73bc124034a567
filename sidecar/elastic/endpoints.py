"""The inference endpoint a deployment gets on the cluster: its task type and the PUT body pointing back here.

`text_embedding` models become `text_embedding` endpoints, `text_expansion` models `sparse_embedding` ones; with
the `custom` service every other task becomes a `completion` endpoint whose one string is the task's result JSON.
The endpoint id is the model id, so an ingest `inference` processor with `model_id: <model id>` and
`input_output` reaches the model.
"""

from __future__ import annotations

from typing import Any

from sidecar.elastic.probe import CUSTOM, HUGGING_FACE, ClusterInfo
from sidecar.workers.cores import usable_cores

DENSE, SPARSE, COMPLETION = "text_embedding", "sparse_embedding", "completion"
# How Elasticsearch reads the custom callback's answers (MapPathExtractor paths); the route writes these shapes.
JSON_PARSERS = {
    DENSE: {"text_embeddings": "$.data[*].embedding"},
    SPARSE: {"token_path": "$.data[*].embedding[*].token", "weight_path": "$.data[*].embedding[*].weight"},
    COMPLETION: {"completion_result": "$.result"},
}
# Each cluster node sends at most requests_per_minute / 60 calls a second per endpoint, with no burst, and queues
# the rest up to `xpack.inference.http.request_executor.queue_capacity` (2000), past which it fails the document
# (RequestExecutorService; custom defaults to 10,000 a minute, hugging_face to 3,000). A limit at the node's own
# throughput would fail documents of any large bulk in that queue; the node paces the cluster instead by making
# callbacks wait for a worker. So the limit is what the node could serve at most: a pinned worker answers no more
# than about 1,000 single-input calls a second (a small model on short texts), one worker per usable core.
_CALLS_PER_CORE_PER_MINUTE = 60_000
# `${input_type}` gets `translation[<the request's InputType>]`, else `default` (EmbeddingParameters); the keys may
# only be ingest, search, classification, clustering (InputType.validateInputTypeTranslationValues). Ingest
# pipelines and semantic_text send INTERNAL_INGEST, semantic and knn queries INTERNAL_SEARCH, and the custom service
# passes them on untranslated, so both get `default`; only a direct `_inference` call with `input_type` is
# translated. The default is ingest, what nearly every callback is.
INPUT_TYPE = {"translation": {"ingest": "ingest", "search": "search"}, "default": "ingest"}
_RATE_LIMIT_SINCE = (8, 15, 0)  # `rate_limit` of hugging_face endpoints: present by 8.15, release not pinned down
_FORCE_DELETE_SINCE = (8, 15, 0)  # `force` on DELETE _inference (documented from 8.15)


def endpoint_task(info: ClusterInfo, model_task: str) -> tuple[str | None, str | None]:
    """The endpoint's task type for a model of `model_task`, or None and why not."""
    if info.service is None:
        return None, info.reason
    if model_task == "text_embedding":
        return DENSE, None
    if model_task == "text_expansion":
        return SPARSE, None
    if info.service == CUSTOM:
        return COMPLETION, None
    return None, (
        f"Elasticsearch [{info.version}] has no [custom] inference service (8.19.x, or 9.1 and later): "
        f"only text_embedding and text_expansion models get endpoints there, this one is [{model_task}]"
    )


def endpoint_body(
    info: ClusterInfo, task_type: str, model_id: str, node_url: str, secret: str, batch_size: int
) -> dict[str, Any]:
    if info.service == HUGGING_FACE:
        return _hugging_face(info, model_id, node_url, secret)
    return _custom(task_type, model_id, node_url, secret, batch_size)


def callback_url(service: str, node_url: str, model_id: str) -> str:
    return f"{node_url}/_sidecar/{'hf' if service == HUGGING_FACE else service}/{model_id}"


def requests_per_minute() -> int:
    return len(usable_cores()) * _CALLS_PER_CORE_PER_MINUTE


def force_delete_params(info: ClusterInfo) -> dict[str, str]:
    return {"force": "true"} if info.parsed_version >= _FORCE_DELETE_SINCE else {}


def _custom(task_type: str, model_id: str, node_url: str, secret: str, batch_size: int) -> dict[str, Any]:
    """The secret travels as a secret parameter, templated into the Authorization header; `${input}` is a JSON
    array of strings for embeddings and one JSON string for completion."""
    settings: dict[str, Any] = {
        "url": callback_url(CUSTOM, node_url, model_id),
        "headers": {"Authorization": "Bearer ${api_key}"},
        "secret_parameters": {"api_key": secret},
        "request": '{"input": ${input}}',
        "response": {"json_parser": JSON_PARSERS[task_type]},
        "rate_limit": {"requests_per_minute": requests_per_minute()},
    }
    if task_type != COMPLETION:
        settings["request"] = '{"input": ${input}, "input_type": ${input_type}}'
        settings["input_type"] = INPUT_TYPE  # completion requests have no ${input_type} (CompletionParameters)
        settings["batch_size"] = batch_size  # chunked (semantic_text) inputs per call; one batch of the workers
    if task_type == DENSE:
        settings["similarity"] = "cosine"  # custom would store dot_product; the vectors are unit length either way
    return {"service": CUSTOM, "service_settings": settings}


def _hugging_face(info: ClusterInfo, model_id: str, node_url: str, secret: str) -> dict[str, Any]:
    """The cluster sends `Authorization: Bearer <api_key>`; similarity defaults to cosine."""
    settings: dict[str, Any] = {"url": callback_url(HUGGING_FACE, node_url, model_id), "api_key": secret}
    if info.parsed_version >= _RATE_LIMIT_SINCE:
        settings["rate_limit"] = {"requests_per_minute": requests_per_minute()}
    return {"service": HUGGING_FACE, "service_settings": settings}
