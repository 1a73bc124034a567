"""Inference endpoints on the cluster for this node's deployments: made when a deployment starts, kept across
restarts, removed with the model. Each model's entry says what happened, for `GET /_sidecar/status`."""

from __future__ import annotations

import asyncio
import logging
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


class Registry:
    def __init__(self, es: AsyncElasticsearch, node_url: str, secret: str, batch_size: int) -> None:
        self.es = es
        self.node_url = node_url
        self.secret = secret
        self.batch_size = batch_size
        self.entries: dict[str, dict[str, Any]] = {}  # model id -> what the cluster has for it
        self._locks: dict[str, asyncio.Lock] = {}

    async def register(self, info: ClusterInfo, model_id: str, model_task: str, replace: bool) -> str | None:
        """Give the model an endpoint; returns why it has none, if it has none.

        `replace` (a new `_start`) swaps an existing endpoint for this node's; otherwise one that exists is kept (a
        restart, or another node that registered the deployment first). An unreachable cluster leaves no entry, so
        the next attempt tries again.
        """
        async with self._locks.setdefault(model_id, asyncio.Lock()):
            if not replace and model_id in self.entries:
                return self.entries[model_id].get("reason")
            task_type, reason = endpoint_task(info, model_task)
            if task_type is None:
                return self._refused(model_id, info, reason or "")
            try:
                url = await self._put(info, task_type, model_id, replace)
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
            log.info("inference endpoint [%s/%s] on the cluster calls %s", task_type, model_id, url)
            return None

    async def unregister(self, info: ClusterInfo, model_id: str) -> None:
        """Delete the model's endpoint, whoever made it (its pipeline references were checked, or forced, before)."""
        async with self._locks.setdefault(model_id, asyncio.Lock()):
            self.entries.pop(model_id, None)
            existing = await self._existing(model_id)
            if existing is not None:
                path = f"/_inference/{existing['task_type']}/{model_id}"
                await call(self.es, "DELETE", path, params=force_delete_params(info))
                log.info("inference endpoint [%s] deleted with its model", model_id)

    def forget_refusals(self) -> None:
        """Let the next pass try again the models the cluster could not take."""
        self.entries = {model_id: entry for model_id, entry in self.entries.items() if "reason" not in entry}

    async def _put(self, info: ClusterInfo, task_type: str, model_id: str, replace: bool) -> str:
        """PUT this node's endpoint (the cluster calls back once to validate it); returns the URL it calls."""
        existing = await self._existing(model_id)
        if existing is not None:
            if not replace:
                return str(existing.get("service_settings", {}).get("url", ""))
            await call(
                self.es, "DELETE", f"/_inference/{existing['task_type']}/{model_id}", params=force_delete_params(info)
            )
        body = endpoint_body(info, task_type, model_id, self.node_url, self.secret, self.batch_size)
        await call(self.es.options(request_timeout=_PUT_TIMEOUT_S), "PUT", f"/_inference/{task_type}/{model_id}", body)
        return callback_url(str(info.service), self.node_url, model_id)

    async def _existing(self, model_id: str) -> dict[str, Any] | None:
        """The endpoint with this id, of any task type (8.12-8.13 answer `models`, later versions `endpoints`)."""
        try:
            body = await call(self.es, "GET", f"/_inference/{model_id}")
        except EsError as error:
            if error.status == 404:
                return None
            raise
        for endpoint in body.get("endpoints", body.get("models", [])):
            if endpoint.get("inference_id", endpoint.get("model_id")) == model_id:
                return endpoint
        return None

    def _refused(self, model_id: str, info: ClusterInfo, reason: str) -> str:
        log.warning("model [%s] cannot be reached from ingest pipelines: %s", model_id, reason)
        self.entries[model_id] = {"inference_id": model_id, "service": info.service, "reason": reason}
        return reason


def _chain(error: EsError) -> str:
    """The reason and its causes: a failed validation call says what failed only in its cause."""
    return error.reason if error.caused_by is None else f"{error.reason} ({_chain(error.caused_by)})"
