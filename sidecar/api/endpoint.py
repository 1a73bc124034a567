"""Turn `handler(ctx, request)` functions into Starlette endpoints with Elasticsearch's conventions."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.wire import EsRequest, error_response, render
from sidecar.cluster.forward import Forwarder
from sidecar.cluster.node import Node
from sidecar.deployment.manager import Deployments
from sidecar.elastic.link import ClusterLink
from sidecar.elastic.privileges import Action
from sidecar.errors import EsError
from sidecar.settings import Settings
from sidecar.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What every handler may use: this node, its settings, the store and the deployments."""

    settings: Settings
    node: Node
    store: Store
    deployments: Deployments
    forwarder: Forwarder
    cluster: ClusterLink | None = None  # the Elasticsearch cluster next to the node (--es-url)
    callback_secret: str | None = None  # what the cluster's inference endpoints must send on callbacks


Handler = Callable[[Context, EsRequest], Awaitable[Any]]


def endpoint(handler: Handler, action: Action | None = None) -> Callable[[Request], Awaitable[Response]]:
    """Read the bounded body, run the handler, render its dict (or pass its Response), map errors to envelopes.

    With a secured cluster, the caller's credentials must grant `action` there first.
    """

    async def run(request: Request) -> Response:
        es_request: EsRequest | None = None
        try:
            cluster = request.app.state.context.cluster
            if action is not None and cluster is not None:
                await cluster.guard.check(request, action)
            body = await _read_body(request, request.app.state.context.settings.max_body_bytes)
            es_request = EsRequest(request, body)
            result = await handler(request.app.state.context, es_request)
            if isinstance(result, Response):
                return result
            return render(result, params=es_request.params)
        except EsError as error:
            return _with_headers(error_response(error, es_request.params if es_request else None), error)
        except Exception as exc:  # never a stack trace to the caller
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error_response(EsError(500, "exception", f"{type(exc).__name__}: {exc}"))

    run.__name__ = handler.__name__
    return run


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _with_headers(response: Response, error: EsError) -> Response:
    """Elasticsearch also sends an exception's headers (a 401's `WWW-Authenticate`) as HTTP headers."""
    for name, values in error.metadata.get("header", {}).items():
        for value in values:
            response.headers.append(name, value)
    return response


def _too_large(limit: int) -> EsError:
    return EsError(413, "", f"Request body is larger than the [{limit}] bytes allowed (http.max_content_length)")
