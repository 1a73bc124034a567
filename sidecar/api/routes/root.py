"""`GET /` (and `HEAD /`, which `ping()` uses) and the node status route health checks use."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from sidecar.api.endpoint import Context
from sidecar.api.wire import BUILD_HASH, EsRequest
from sidecar.deployment.states import RoutingState

_LUCENE = "10.3.1"  # the Lucene release Elasticsearch 9.2 ships with


async def info(ctx: Context, request: EsRequest) -> Any:
    request.params.finish()
    if request.http.method == "HEAD":
        return Response(status_code=200, media_type="application/json")
    return {
        "name": ctx.node.name,
        "cluster_name": ctx.settings.cluster_name,
        "cluster_uuid": ctx.store.cluster_uuid,
        "version": {
            "number": ctx.settings.es_version,
            "build_flavor": "default",
            "build_type": "sidecar",
            "build_hash": BUILD_HASH,
            "build_date": "2026-01-01T00:00:00.000000000Z",
            "build_snapshot": False,
            "lucene_version": _LUCENE,
            "minimum_wire_compatibility_version": "8.19.0",
            "minimum_index_compatibility_version": "8.0.0",
        },
        "tagline": "You Know, for Search",
    }


async def status(ctx: Context, request: EsRequest) -> Any:
    request.params.finish()
    deployments = {}
    for model_id in sorted(ctx.deployments.local):
        stats = ctx.deployments.local_stats(model_id)
        deployments[model_id] = {
            "routing_state": RoutingState.STARTED,
            "inference_threads": stats["inference_threads"],
            "model_threads": stats["model_threads"],
            "batching": "batched" if stats["batching"] else "row_by_row",
            "precision": stats["precision"],
            "number_of_pending_requests": stats["number_of_pending_requests"],
            "queue_capacity": stats["queue_capacity"],
            # callbacks that waited past queue_capacity instead of a 429, and the 429s and timeouts there were
            "waited_beyond_capacity_count": stats["waited_beyond_capacity_count"],
            "rejected_execution_count": stats["rejected_execution_count"],
            "timeout_count": stats["timeout_count"],
            "workers": ctx.deployments.local[model_id].pool.describe_workers(),
        }
    return {
        "node_id": ctx.node.id,
        "name": ctx.node.name,
        "url": ctx.node.url,
        "usable_cores": len(ctx.node.cores),
        "cluster_uuid": ctx.store.cluster_uuid,
        "deployments": deployments,
    }
