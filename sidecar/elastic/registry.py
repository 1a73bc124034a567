"""Inference endpoints on the cluster for the deployments of the nodes: made when a deployment starts, kept across
restarts, re-pointed when the node they call leaves, removed with the model. Each model's entry says what happened,
for `GET /_sidecar/status`.

An endpoint is the nodes' own when its URL is a node's callback route for that model; an endpoint with the model's
id that someone else made is never replaced or deleted: the deployment then says why ingest cannot reach it.
When the node an endpoint calls is gone, the live node with the lowest URL among those serving the model
re-registers it with its own URL, so exactly one node does so however many notice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from elastic_transport import TransportError
from elasticsearch import AsyncElasticsearch

from sidecar.elastic.client import call
from sidecar.elastic.endpoints import callback_url, endpoint_body, endpoint_task, force_delete_params
from sidecar.elastic.probe import ClusterInfo
from sidecar.errors import EsError

log = logging.getLogger(__name__)
# A PUT waits for the cluster's validation call back to this node (30 s on the cluster's side).
_PUT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Serving:
    """The URLs of the live nodes that serve a model (this node's included when it does)."""

    urls: frozenset[str]


class Registry:
    def __init__(self, es: AsyncElasticsearch, node_url: str, secret: str, batch_size: int) -> None:
        self.es = es
        self.node_url = node_url
        self.secret = secret
        self.batch_size = batch_size
        self.entries: dict[str, dict[str, Any]] = {}  # model id -> what the cluster has for it
        self._locks: dict[str, asyncio.Lock] = {}

    async def register(self, info: ClusterInfo, model_id: str, model_task: str, serving: Serving) -> str | None:
        """Give the model an endpoint the nodes serve; returns why it has none, if it has none.

        An endpoint of the nodes' that calls a node still serving the model is kept; one calling a node that is gone
        is re-pointed (see the module). A refusal is kept until the cluster changes (`forget_refusals`); an
        unreachable cluster leaves no entry, so the next pass tries again.
        """
        async with self._locks.setdefault(model_id, asyncio.Lock()):
            if "reason" in self.entries.get(model_id, {}):
                return str(self.entries[model_id]["reason"])
            task_type, reason = endpoint_task(info, model_task)
            if task_type is None:
                return self._refused(model_id, info, reason or "")
            try:
                existing = await self._existing(model_id)
                if existing is not None and not _made_by_nodes(existing, model_id):
                    return self._refused(model_id, info, _foreign(model_id))
                url = _url(existing) if existing is not None else None
                successor = min(serving.urls | {self.node_url}) == self.node_url
                if url is None or (_node_of(url) not in serving.urls and successor):
                    url = await self._put(info, task_type, model_id, existing)
            except EsError as error:
                return self._refused(
                    model_id, info, f"the cluster refused inference endpoint [{model_id}]: {_chain(error)}"
                )
            except TransportError as error:
                log.warning("inference endpoint [%s] not created: the cluster cannot be reached (%s)", model_id, error)
                return f"the cluster cannot be reached: {error}"
            self.entries[model_id] = {
                "inference_id": model_id,
                "task_type": task_type,
                "service": info.service,
                "url": url,
            }
            return None

    async def unregister(self, info: ClusterInfo, model_id: str, force: bool) -> None:
        """Delete the model's endpoint if the nodes made it. Without `force` the cluster refuses (409) an endpoint a
        pipeline or a `semantic_text` mapping uses, and that refusal is raised for the model's DELETE to answer."""
        async with self._locks.setdefault(model_id, asyncio.Lock()):
            existing = await self._existing(model_id)
            if existing is not None and _made_by_nodes(existing, model_id):
                params = force_delete_params(info) if force else {}
                await call(self.es, "DELETE", f"/_inference/{existing['task_type']}/{model_id}", params=params)
                log.info("inference endpoint [%s] deleted with its model", model_id)
            self.entries.pop(model_id, None)

    def forget(self, model_id: str) -> None:
        """A new `_start` tries again, whatever the last attempt found."""
        self.entries.pop(model_id, None)

    def forget_refusals(self) -> None:
        """Let the next pass try again the models the cluster could not take."""
        self.entries = {model_id: entry for model_id, entry in self.entries.items() if "reason" not in entry}

    async def _put(self, info: ClusterInfo, task_type: str, model_id: str, existing: dict[str, Any] | None) -> str:
        """PUT this node's endpoint, in place of `existing` (the cluster calls back once to validate it)."""
        if existing is not None:  # the nodes' own, calling a node that left: references stay valid, so forced
            path = f"/_inference/{existing['task_type']}/{model_id}"
            await call(self.es, "DELETE", path, params=force_delete_params(info))
            log.warning(
                "inference endpoint [%s] called a node that left (%s); this node takes it over",
                model_id,
                _url(existing),
            )
        body = endpoint_body(info, task_type, model_id, self.node_url, self.secret, self.batch_size)
        await call(self.es.options(request_timeout=_PUT_TIMEOUT_S), "PUT", f"/_inference/{task_type}/{model_id}", body)
        url = callback_url(str(info.service), self.node_url, model_id)
        log.info("inference endpoint [%s/%s] on the cluster calls %s", task_type, model_id, url)
        return url

    async def _existing(self, model_id: str) -> dict[str, Any] | None:
        """The endpoint with this id, of any task type. `GET _inference/_all` is served by every version from 8.12
        (which has no one-segment `GET _inference/<id>`); 8.12-8.13 answer `models`/`model_id`, later versions
        `endpoints`/`inference_id`."""
        body = await call(self.es, "GET", "/_inference/_all")
        for endpoint in body.get("endpoints", body.get("models", [])):
            if endpoint.get("inference_id", endpoint.get("model_id")) == model_id:
                return endpoint
        return None

    def _refused(self, model_id: str, info: ClusterInfo, reason: str) -> str:
        log.warning("model [%s] cannot be reached from ingest pipelines: %s", model_id, reason)
        self.entries[model_id] = {"inference_id": model_id, "service": info.service, "reason": reason}
        return reason


def _url(endpoint: dict[str, Any]) -> str:
    return str(endpoint.get("service_settings", {}).get("url", ""))


def _made_by_nodes(endpoint: dict[str, Any], model_id: str) -> bool:
    """The endpoint calls a node's callback route for this model (custom or hugging_face)."""
    url = _url(endpoint)
    return any(url.endswith(f"/_sidecar/{route}/{model_id}") for route in ("custom", "hf"))


def _node_of(url: str) -> str:
    return url.rpartition("/_sidecar/")[0]


def _foreign(model_id: str) -> str:
    return (
        f"an inference endpoint [{model_id}] that no sidecar node made exists on the cluster; it is left as it is, "
        f"and ingest pipelines naming [{model_id}] reach it, not this deployment"
    )


def _chain(error: EsError) -> str:
    """The reason and its causes: a failed validation call says what failed only in its cause."""
    return error.reason if error.caused_by is None else f"{error.reason} ({_chain(error.caused_by)})"
