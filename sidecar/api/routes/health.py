"""`GET /_sidecar/health`: whether this node can serve, in Elasticsearch's colours, for load balancers and container
health checks, which carry no credentials.

- green: the store answers, the cluster (with `--es-url`) answers, every live node serves every deployment;
- yellow: the node serves, but the cluster cannot be reached, a peer is late with its heartbeat, or an allocation is
  missing (a deployment not started on some live node, this one included);
- red: the store cannot be reached, or deployments are wanted and none of them can serve here.

Only the last case answers 503: a node that can serve its local deployments answers 200, whatever else is wrong.
Anyone may call it, so it says how many, never which: no model ids, names, URLs or error texts.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.endpoint import Context
from sidecar.api.wire import render

GREEN, YELLOW, RED = "green", "yellow", "red"
_LATE_HEARTBEATS = 3  # a peer this many heartbeats behind is late, before it is dropped as gone


async def health(request: Request) -> Response:
    report, can_serve = assess(request.app.state.context)
    return render(report, 200 if can_serve else 503)


def assess(ctx: Context) -> tuple[dict[str, Any], bool]:
    """The report, and whether the node can serve what is deployed (true when nothing is)."""
    deployments = ctx.deployments
    live = {node["id"] for node in deployments.live} | {ctx.node.id}
    wanted = deployments.serving  # model id -> ids of the nodes whose allocation is started
    here = {model_id for model_id in wanted if _serves_here(ctx, model_id)}
    missing = sum(len(live - _serving_nodes(ctx, model_id, started, here)) for model_id, started in wanted.items())
    late = _late_peers(ctx)
    cluster = "not_configured" if ctx.cluster is None else "connected" if ctx.cluster.problem is None else "unreachable"
    store = "reachable" if deployments.store_problem is None else "unreachable"
    can_serve = not wanted or bool(here)
    if store == "unreachable" or not can_serve:
        colour = RED
    elif cluster == "unreachable" or late or missing:
        colour = YELLOW
    else:
        colour = GREEN
    report = {
        "status": colour,
        "store": store,
        "cluster": cluster,
        "number_of_nodes": len(live),
        "late_nodes": late,
        "number_of_deployments": len(wanted),
        "deployments_serving_here": len(here),
        "missing_allocations": missing,
    }
    return report, can_serve


def _serves_here(ctx: Context, model_id: str) -> bool:
    local = ctx.deployments.local.get(model_id)
    return local is not None and local.pool.serving_workers > 0


def _serving_nodes(ctx: Context, model_id: str, started: list[str], here: set[str]) -> set[str]:
    """The nodes whose allocation serves: the store's word for peers, the workers' own for this node."""
    return (set(started) - {ctx.node.id}) | ({ctx.node.id} if model_id in here else set())


def _late_peers(ctx: Context) -> int:
    horizon = time.time() - _LATE_HEARTBEATS * ctx.settings.heartbeat_interval_s
    return sum(node["id"] != ctx.node.id and node["last_seen"] < horizon for node in ctx.deployments.live)
