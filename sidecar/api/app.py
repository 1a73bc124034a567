"""The node's HTTP application: routes, the product header, and the deployment loop's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.api.endpoint import Context, credentials, endpoint
from sidecar.api.routes import callback, deployment, health, infer, models, root
from sidecar.api.wire import PRODUCT_HEADER, error_response
from sidecar.cluster.forward import Forwarder
from sidecar.cluster.node import load_node
from sidecar.deployment.manager import Deployments
from sidecar.elastic.link import ClusterLink
from sidecar.elastic.privileges import route_action
from sidecar.elastic.secret import callback_secret
from sidecar.elastic.status import with_cluster
from sidecar.errors import EsError
from sidecar.settings import Settings
from sidecar.store import open_store

log = logging.getLogger(__name__)
_MODEL = "/_ml/trained_models/{model_id}"


def _routes() -> list[Route]:
    table: list[tuple[str, list[str], Any]] = [
        ("/", ["GET", "HEAD"], root.info),
        ("/_sidecar/status", ["GET"], with_cluster(root.status)),
        ("/_ml/trained_models", ["GET"], models.get_models),
        ("/_ml/trained_models/_stats", ["GET"], deployment.stats),
        (f"{_MODEL}/_stats", ["GET"], deployment.stats),
        (_MODEL, ["GET"], models.get_models),
        (_MODEL, ["PUT"], models.put_model),
        (_MODEL, ["DELETE"], models.delete_model),
        (f"{_MODEL}/definition/{{part}}", ["PUT"], models.put_definition_part),
        (f"{_MODEL}/vocabulary", ["PUT"], models.put_vocabulary),
        (f"{_MODEL}/deployment/_start", ["POST"], deployment.start),
        (f"{_MODEL}/deployment/_stop", ["POST"], deployment.stop),
        (f"{_MODEL}/deployment/_infer", ["POST"], infer.infer_deployment),
        (f"{_MODEL}/_infer", ["POST"], infer.infer),
    ]
    # what the cluster's inference endpoints call (behind the shared secret, not the caller's credentials)
    callbacks = [
        ("/_sidecar/custom/{model_id}", callback.custom),
        ("/_sidecar/hf/{model_id}", callback.hugging_face),
        ("/v1/embeddings", callback.openai_embeddings),
    ]
    rest = [
        Route(path, endpoint(handler, credentials(route_action(methods, path))), methods=methods)
        for path, methods, handler in table
    ]
    return rest + [
        Route(path, endpoint(route.handle, callback.check_secret, route.refuse), methods=["POST"])
        for path, route in callbacks
    ]


def create_app(settings: Settings) -> ASGIApp:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings)
        node = load_node(settings)
        deployments = Deployments(store, node, settings)
        secret = callback_secret(settings)
        forwarder = Forwarder(node.id, secret)
        cluster = ClusterLink(settings, secret) if settings.es_url and secret else None
        app.state.context = Context(settings, node, store, deployments, forwarder, cluster, secret)
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

    # open to anyone, as health checks carry no credentials: it says how many, never which
    health_route = Route("/_sidecar/health", health.health, methods=["GET"])
    app = Starlette(routes=[*_routes(), health_route], lifespan=lifespan)
    app.add_exception_handler(404, _no_handler)
    app.add_exception_handler(405, _wrong_method)
    return ProductHeader(app)


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
