"""A node's link to its cluster: what the cluster is, the endpoints made there, the caller guard, and the loop
that reconnects and gives every deployment started here an endpoint (restored deployments included).

When the cluster cannot take endpoints (too old, wrong license, unreachable) the node says so in its log, in
`GET /_sidecar/status` and in the `_start` response, and keeps serving the direct APIs.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from elastic_transport import TransportError

from sidecar.deployment.manager import Deployments
from sidecar.elastic.client import connect
from sidecar.elastic.exposure import is_exposed
from sidecar.elastic.guard import Guard
from sidecar.elastic.probe import ClusterInfo, probe
from sidecar.elastic.references import referencing_pipelines
from sidecar.elastic.registry import Registry, Serving
from sidecar.errors import EsError, status_exception
from sidecar.logs import event
from sidecar.settings import Settings

log = logging.getLogger(__name__)
_INTERVAL_S = 5.0
_NOT_CONTACTED = "not contacted yet"


class ClusterLink:
    """Made with `--es-url`; `start` runs its loop, `close` ends it and the client."""

    def __init__(self, settings: Settings, secret: str) -> None:
        self.url = settings.es_url
        self.es = connect(settings)
        self.registry = Registry(self.es, settings.url, secret, settings.max_batch_docs)
        self.guard = Guard(self, secret)
        self.info: ClusterInfo | None = None
        self.problem: str | None = _NOT_CONTACTED  # why the cluster cannot be reached, while it cannot
        self._exposed = is_exposed(settings)
        self._loop: asyncio.Task[None] | None = None
        self._deployments: Deployments | None = None

    def start(self, deployments: Deployments) -> None:
        self._deployments = deployments
        self._loop = asyncio.create_task(self._run(deployments))

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        await self.es.close()

    async def refresh(self) -> ClusterInfo | None:
        """Ask the cluster what it is; log what changed."""
        try:
            info = await probe(self.es)
        except (TransportError, EsError, KeyError, ValueError) as exc:
            if self.problem in (None, _NOT_CONTACTED):  # one line per outage; the next is when it answers again
                log.warning(
                    "Elasticsearch cluster [%s] cannot be reached: %s; the direct APIs keep working", self.url, exc,
                    extra=event("cluster-unreachable", "failure"),
                )  # fmt: skip
            self.problem = str(exc)
            return None
        if info != self.info or self.problem is not None:
            _log_capability(self.url, info)
        if info != self.info:  # a new version or license may take what the old one refused
            self.registry.forget_refusals()
        self.info, self.problem = info, None
        return info

    async def current(self) -> ClusterInfo:
        """What the cluster is, asking it if it never answered; 503 while it cannot be reached."""
        info = self.info or await self.refresh()
        if info is None:
            raise status_exception(503, f"the Elasticsearch cluster [{self.url}] cannot be reached: {self.problem}")
        return info

    def refuse_open_exposure(self) -> None:
        """A node listening beyond loopback serves no one unauthenticated, even if the cluster turned security off."""
        if self._exposed:
            raise status_exception(
                503,
                f"the cluster [{self.url}] has security disabled and this node listens beyond loopback; "
                "start it with --insecure to serve without authentication",
            )

    # what the trained-model routes ask --------------------------------------------------------------
    async def deployment_started(self, model_id: str, config: dict[str, Any]) -> str | None:
        """Give the new deployment this node's endpoint; returns why the cluster cannot reach it, if it cannot."""
        try:
            info = await self.current()
        except EsError as error:
            log.warning("model [%s] cannot be reached from ingest pipelines: %s", model_id, error.reason)
            return error.reason
        self.registry.forget(model_id)
        return await self.registry.register(info, model_id, model_task(config), self._serving(model_id))

    async def model_deleting(self, model_id: str, force: bool) -> None:
        """Before a model is deleted, its endpoint goes: the cluster's 409 for an endpoint that a pipeline or a
        `semantic_text` mapping uses (without `force`) is raised, and the model stays. An unreachable cluster leaves
        the endpoint behind, with a warning."""
        try:
            await self.registry.unregister(await self.current(), model_id, force)
        except EsError as error:
            if error.status == 409:
                raise
            log.warning("inference endpoint [%s] may remain on the cluster: %s", model_id, error.reason)
        except TransportError as exc:
            log.warning("inference endpoint [%s] may remain on the cluster: %s", model_id, exc)

    async def refuse_if_referenced(self, model_id: str, message: str) -> None:
        """Raise Elasticsearch's 409 `message` when an ingest pipeline uses the model (503 when it cannot tell)."""
        await self.current()
        try:
            pipelines = await referencing_pipelines(self.es, model_id)
        except TransportError as exc:
            raise status_exception(
                503, f"cannot read the ingest pipelines of the cluster [{self.url}]: {exc}"
            ) from None
        if pipelines:
            raise status_exception(409, message)

    def _serving(self, model_id: str) -> Serving:
        """Live nodes serving the model, as of the deployments' last look at the store (this node included)."""
        if self._deployments is None:
            return Serving(frozenset({self.registry.node_url}))
        serving = set(self._deployments.serving.get(model_id, []))
        urls = {node["url"] for node in self._deployments.live if node["id"] in serving}
        return Serving(frozenset(urls | {self.registry.node_url}))

    def status(self) -> dict[str, Any]:
        """The `cluster` section of `GET /_sidecar/status`."""
        out: dict[str, Any] = {"url": self.url, "state": "connected" if self.problem is None else "unreachable"}
        if self.info is not None:
            out |= {
                "version": self.info.version,
                "license": self.info.license_type,
                "security": self.info.security,
                "inference_service": self.info.service,
            }
        reason = self.problem or (self.info.reason if self.info else None)
        if reason:
            out["reason"] = reason
        out["endpoints"] = dict(sorted(self.registry.entries.items()))
        return out

    async def _run(self, deployments: Deployments) -> None:
        while True:
            try:
                info = await self.refresh()
                if info is not None:
                    for model_id, local in list(deployments.local.items()):
                        await self.registry.register(info, model_id, model_task(local.config), self._serving(model_id))
            except Exception:
                log.exception("cluster link loop failed; retrying")
            await asyncio.sleep(_INTERVAL_S)


def model_task(config: dict[str, Any]) -> str:
    return next(iter(config["inference_config"]))


def _log_capability(url: str | None, info: ClusterInfo) -> None:
    summary = f"Elasticsearch [{info.version}] at [{url}], license [{info.license_type}], security {'on' if info.security else 'off'}"
    if info.service is None:
        log.warning(
            "%s: ingest pipelines cannot reach models on this node: %s; the direct APIs keep working",
            summary,
            info.reason,
        )
    else:
        log.info("%s: deployments get [%s] inference endpoints", summary, info.service)


def with_reason(rendered: dict[str, Any], reason: str | None) -> dict[str, Any]:
    """The `_start` body (`allocation` or, from 8.x's TrainedModelAssignment, `assignment`) with a `reason` after
    its state, as both write it; unchanged without one."""
    if reason is None:
        return rendered
    [(name, body)] = rendered.items()
    out: dict[str, Any] = {}
    for key, value in body.items():
        out[key] = value
        if key in ("allocation_state", "assignment_state"):
            out["reason"] = reason
    return {name: out}
