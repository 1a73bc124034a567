"""`PUT` and `DELETE /_ml/trained_models/<model_id>/model_aliases/<model_alias>`."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sidecar.api.endpoint import Context
from sidecar.api.wire import EsRequest, deprecation_warning, render
from sidecar.models.aliases import PutAlias, delete_alias, put_alias

_ACKNOWLEDGED = {"acknowledged": True}


async def put(ctx: Context, request: EsRequest) -> Response:
    reassign = request.params.bool("reassign")
    request.params.finish()
    alias, model_id = request.path_params["model_alias"], request.path_params["model_id"]
    warnings = await put_alias(ctx.store, PutAlias(alias, model_id, reassign))
    response = render(_ACKNOWLEDGED, params=request.params)
    for warning in warnings:  # HeaderWarning's format, the one deprecations use
        response.headers.append("Warning", deprecation_warning(ctx.settings.es_version, warning))
    return response


async def delete(ctx: Context, request: EsRequest) -> Any:
    request.params.finish()
    alias, model_id = request.path_params["model_alias"], request.path_params["model_id"]

    async def unreferenced() -> None:
        if ctx.cluster is not None:
            reason = f"Cannot delete model_alias [{alias}] as it is still referenced by ingest processors"
            await ctx.cluster.refuse_if_referenced(alias, reason)

    await delete_alias(ctx.store, alias, model_id, unreferenced)
    return _ACKNOWLEDGED
