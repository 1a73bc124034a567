"""The node's HTTP application: routes, the product header, and the deployment loop's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.api.counting import CountRequests
from sidecar.api.endpoint import Context, credentials, endpoint
from sidecar.api.routes import aliases, callback, deployment, health, infer, metrics, models, root
from sidecar.api.wire import PRODUCT_HEADER, error_response
from sidecar.cluster.forward import Forwarder
from sidecar.cluster.node import load_node
from sidecar.deployment.manager import Deployments
from sidecar.elastic import privileges
from sidecar.elastic.link import ClusterLink
from sidecar.elastic.privileges import Action
from sidecar.elastic.secret import callback_secret
from sidecar.elastic.status import with_cluster
from sidecar.errors import EsError
from sidecar.metrics import NodeMetrics
from sidecar.settings import Settings
from sidecar.store import open_store

log = logging.getLogger(__name__)
_MODEL = "/_ml/trained_models/{model_id}"
# What a route asks before its handler runs, besides an Elasticsearch action the caller's credentials must grant:
CALLBACK_SECRET = "callback secret"  # the cluster's inference endpoints calling back (not the caller's credentials)
NONE = "none"  # nothing: open to anyone (health checks and Prometheus carry no credentials; neither names a secret)
Privilege = Action | str


@dataclass(frozen=True)
class RouteSpec:
    """One row of the route table; every row names what it asks of the caller."""

    path: str
    methods: tuple[str, ...]
    handler: Any  # a `handler(ctx, request)`, a `Callback` (CALLBACK_SECRET) or a Starlette endpoint (NONE)
    privilege: Privilege


ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec("/", ("GET", "HEAD"), root.info, privileges.MAIN),
    RouteSpec("/_sidecar/status", ("GET",), with_cluster(root.status), privileges.STATS),
    RouteSpec("/_sidecar/health", ("GET",), health.health, NONE),
    RouteSpec("/metrics", ("GET",), metrics.metrics, NONE),
    RouteSpec("/_ml/trained_models", ("GET",), models.get_models, privileges.GET_MODELS),
    RouteSpec("/_ml/trained_models/_stats", ("GET",), deployment.stats, privileges.STATS),
    RouteSpec(f"{_MODEL}/_stats", ("GET",), deployment.stats, privileges.STATS),
    RouteSpec(_MODEL, ("GET",), models.get_models, privileges.GET_MODELS),
    RouteSpec(_MODEL, ("PUT",), models.put_model, privileges.PUT_MODEL),
    RouteSpec(_MODEL, ("DELETE",), models.delete_model, privileges.DELETE_MODEL),
    RouteSpec(f"{_MODEL}/definition/{{part}}", ("PUT",), models.put_definition_part, privileges.PUT_PART),
    RouteSpec(f"{_MODEL}/vocabulary", ("PUT",), models.put_vocabulary, privileges.PUT_VOCABULARY),
    RouteSpec(f"{_MODEL}/model_aliases/{{model_alias}}", ("PUT",), aliases.put, privileges.PUT_MODEL_ALIAS),
    RouteSpec(f"{_MODEL}/model_aliases/{{model_alias}}", ("DELETE",), aliases.delete, privileges.DELETE_MODEL_ALIAS),
    RouteSpec(f"{_MODEL}/deployment/_start", ("POST",), deployment.start, privileges.START),
    RouteSpec(f"{_MODEL}/deployment/_stop", ("POST",), deployment.stop, privileges.STOP),
    RouteSpec(f"{_MODEL}/deployment/cache/_clear", ("POST",), deployment.clear_cache, privileges.CLEAR_CACHE),
    RouteSpec(f"{_MODEL}/deployment/_infer", ("POST",), infer.infer_deployment, privileges.INFER_DEPLOYMENT),
    RouteSpec(f"{_MODEL}/_infer", ("POST",), infer.infer, privileges.INFER),
    RouteSpec("/_sidecar/custom/{model_id}", ("POST",), callback.custom, CALLBACK_SECRET),
    RouteSpec("/_sidecar/hf/{model_id}", ("POST",), callback.hugging_face, CALLBACK_SECRET),
    RouteSpec("/v1/embeddings", ("POST",), callback.openai_embeddings, CALLBACK_SECRET),
)


def build_route(spec: RouteSpec) -> Route:
    """A Starlette route that asks what its row declares; a row that declares nothing known stops the node's start."""
    methods = list(spec.methods)
    if isinstance(spec.privilege, Action):
        return Route(spec.path, endpoint(spec.handler, credentials(spec.privilege)), methods=methods)
    if spec.privilege == CALLBACK_SECRET:
        guarded = endpoint(spec.handler.handle, callback.check_secret, spec.handler.refuse)
        return Route(spec.path, guarded, methods=methods)
    if spec.privilege == NONE:
        return Route(spec.path, spec.handler, methods=methods)
    known = f"an action, {CALLBACK_SECRET!r} or {NONE!r}"
    raise RuntimeError(f"route [{' '.join(methods)} {spec.path}] declares no privilege ({known})")


def create_app(settings: Settings, node_metrics: NodeMetrics) -> ASGIApp:
    """`node_metrics` is shared with the HTTP protocol, which counts what it refuses before any route."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings)
        node = load_node(settings)
        deployments = Deployments(store, node, settings, node_metrics)
        secret = callback_secret(settings)
        forwarder = Forwarder(node.id, secret)
        cluster = ClusterLink(settings, secret) if settings.es_url and secret else None
        app.state.context = Context(settings, node, store, deployments, forwarder, cluster, secret)
        node_metrics.read_at_scrape(lambda: metrics.node_state(app.state.context))
        await deployments.heartbeat()
        loop_task = asyncio.create_task(deployments.run())
        if cluster is not None:  # endpoints for deployments started here, restored ones included
            cluster.start(deployments)
        log.info("node [%s] (%s) serving on %s with %d usable cores", node.name, node.id, node.url, len(node.cores))
        try:
            yield
        finally:
            await deployments.close()
            await forwarder.close()
            if cluster is not None:
                await cluster.close()
            loop_task.cancel()
            await asyncio.gather(loop_task, return_exceptions=True)
            store.close()

    app = Starlette(routes=[build_route(spec) for spec in ROUTES], lifespan=lifespan)
    app.add_exception_handler(404, _no_handler)
    app.add_exception_handler(405, _wrong_method)
    return ProductHeader(CountRequests(app, node_metrics))


async def _no_handler(request: Request, exc: Exception) -> Response:
    return error_response(EsError(400, "", f"no handler found for uri [{request.url.path}] and method [{request.method}]"))


async def _wrong_method(request: Request, exc: Exception) -> Response:
    allowed = getattr(exc, "headers", {}).get("Allow", "")
    return error_response(
        EsError(405, "", f"Incorrect HTTP method for uri [{request.url.path}] and method [{request.method}], allowed: [{allowed}]")
    )


class ProductHeader:
    """Stamp `X-elastic-product: Elasticsearch` on every response, errors included (clients check it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), PRODUCT_HEADER]
            await send(message)

        await self.app(scope, receive, send_with_header)
