"""Ingest pipelines on the cluster that use a model: Elasticsearch refuses to stop or delete such a model unless
forced, and the sidecar's models are used through inference endpoints with the model's id."""

from __future__ import annotations

from typing import Any

from elasticsearch import AsyncElasticsearch

from sidecar.elastic.client import call
from sidecar.errors import EsError


async def referencing_pipelines(es: AsyncElasticsearch, model_id: str) -> list[str]:
    """Ids of the cluster's pipelines with an `inference` processor for `model_id`."""
    try:
        pipelines = await call(es, "GET", "/_ingest/pipeline")
    except EsError as error:
        if error.status == 404:  # a cluster without pipelines answers 404 `{}`
            return []
        raise
    return referencing(pipelines, model_id)


def referencing(pipelines: dict[str, Any], model_id: str) -> list[str]:
    """Pipelines (id -> definition) whose `inference` processors name `model_id`, at any depth: `on_failure`,
    `foreach`'s processor, a processor's own `on_failure`, ..."""
    return sorted(pipeline_id for pipeline_id, pipeline in pipelines.items() if _uses(pipeline, model_id))


def _uses(node: Any, model_id: str) -> bool:
    if isinstance(node, list):
        return any(_uses(item, model_id) for item in node)
    if not isinstance(node, dict):
        return False
    inference = node.get("inference")
    if isinstance(inference, dict) and inference.get("model_id") == model_id:
        return True
    return any(_uses(value, model_id) for value in node.values())
