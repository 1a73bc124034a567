"""The `cluster` section of `GET /_sidecar/status`: where the node stands with its Elasticsearch cluster."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidecar.api.endpoint import Context
    from sidecar.api.wire import EsRequest

StatusHandler = Callable[["Context", "EsRequest"], Awaitable[dict[str, Any]]]


def with_cluster(handler: StatusHandler) -> StatusHandler:
    """`handler`'s status, plus a `cluster` section (`not_configured` without `--es-url`)."""

    async def status(ctx: Context, request: EsRequest) -> dict[str, Any]:
        out = await handler(ctx, request)
        out["cluster"] = ctx.cluster.status() if ctx.cluster is not None else {"state": "not_configured"}
        return out

    status.__name__ = handler.__name__
    return status
