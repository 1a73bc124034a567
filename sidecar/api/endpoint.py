"""Turn `handler(ctx, request)` functions into Starlette endpoints with Elasticsearch's conventions."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from sidecar.api.breaker import InFlightRequests, Reservation
from sidecar.api.params import Params
from sidecar.api.wire import EsRequest, error_response, render
from sidecar.cluster.forward import Forwarder
from sidecar.cluster.node import Node
from sidecar.deployment.manager import Deployments
from sidecar.deployment.service import DeploymentService
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
    in_flight: InFlightRequests = field(init=False)  # request bytes held by this node, all connections together
    deployment_service: DeploymentService = field(init=False)  # what `_start`, `_stop` and `_stats` call

    def __post_init__(self) -> None:
        self.in_flight = InFlightRequests(self.settings.max_in_flight_bytes)
        self.deployment_service = DeploymentService(self.store, self.deployments, self.cluster)


Handler = Callable[[Context, EsRequest], Awaitable[Any]]
Authorize = Callable[[Context, Request], Awaitable[None]]
Refuse = Callable[[EsError, Params | None], Response]


def endpoint(
    handler: Handler, authorize: Authorize, refuse: Refuse = error_response
) -> Callable[[Request], Awaitable[Response]]:
    """Authorize from the head alone, then read the body counted by the in-flight breaker, run the handler, render
    its dict (or pass its Response), map errors to envelopes (`refuse` words them).

    No body byte is read before `authorize` passes; the body's bytes stay charged until the handler is done.
    """

    async def run(request: Request) -> Response:
        ctx: Context = request.app.state.context
        es_request: EsRequest | None = None
        try:
            await authorize(ctx, request)
            with ctx.in_flight.reservation() as reservation:
                es_request = EsRequest(request, await _read_body(request, ctx.settings.max_body_bytes, reservation))
                result = await handler(ctx, es_request)
            if isinstance(result, Response):
                return result
            return render(result, params=es_request.params)
        except EsError as error:
            return _with_headers(refuse(error, es_request.params if es_request else None), error)
        except ClientDisconnect:
            return Response(status_code=400)  # the peer left (or was cut off) mid-body: nobody reads this
        except Exception as exc:  # never a stack trace to the caller
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            return error_response(EsError(500, "exception", f"{type(exc).__name__}: {exc}"))

    run.__name__ = handler.__name__
    return run


def credentials(action: Action) -> Authorize:
    """With a secured cluster next to the node, the caller's credentials must grant `action` there."""

    async def authorize(ctx: Context, request: Request) -> None:
        if ctx.cluster is not None:
            await ctx.cluster.guard.check(request, action)

    return authorize


async def _read_body(request: Request, limit: int, reservation: Reservation) -> bytearray:
    """The body as it arrives, each chunk charged before it is kept (a bytearray grows without a second copy)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise _too_large(limit)
        reservation.add(len(chunk))
        body += chunk
    return body


def _with_headers(response: Response, error: EsError) -> Response:
    """Elasticsearch also sends an exception's headers (a 401's `WWW-Authenticate`) as HTTP headers."""
    for name, values in error.metadata.get("header", {}).items():
        for value in values:
            response.headers.append(name, value)
    return response


def _too_large(limit: int) -> EsError:
    return EsError(413, "", f"Request body is larger than the [{limit}] bytes allowed (http.max_content_length)")
