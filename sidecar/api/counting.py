"""Count every answered request by route template, method and status, for `GET /metrics`."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidecar.metrics import NodeMetrics

UNMATCHED = "unmatched"  # no route's template matched: the raw path is never a label (anyone can make up paths)


class CountRequests:
    """ASGI middleware around the router, which leaves the matched route in the scope; a response refused before
    routing (a head too long) is counted by the HTTP protocol instead."""

    def __init__(self, app: ASGIApp, metrics: NodeMetrics) -> None:
        self.app = app
        self.requests = metrics.requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the server answers if the application fails before starting a response

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")
            self.requests.labels(route.path if route is not None else UNMATCHED, scope["method"], status).inc()
