"""`GET /metrics`: the node's metrics in Prometheus' text format (or OpenMetrics, when the scraper asks for it).

Open to anyone, as Prometheus scrapes without credentials: the series name routes by template, deployments by id and
workers by index, never a user, a secret or a text. Queue depths, allocations and workers' memory are read from the
node's state when scraped, so requests never pay for them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.endpoint import Context

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


async def metrics(request: Request) -> Response:
    ctx: Context = request.app.state.context
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(ctx.deployments.metrics.registry), headers={"Content-Type": content_type})


def node_state(ctx: Context) -> Iterator[Metric]:
    """The series read from the node's state at each scrape."""
    deployment = ["deployment"]
    depth = GaugeMetricFamily("sidecar_inference_queue_depth", "Documents queued for a worker", labels=deployment)
    capacity = GaugeMetricFamily(
        "sidecar_inference_queue_capacity", "Documents the queue takes before it answers 429", labels=deployment
    )
    allocations = GaugeMetricFamily(
        "sidecar_allocations", "Allocations serving here: workers alive with the model loaded", labels=deployment
    )
    target = GaugeMetricFamily(
        "sidecar_allocations_target", "Allocations this node's workers were started for", labels=deployment
    )
    info = GaugeMetricFamily(
        "sidecar_deployment", "Deployments here, with their model", labels=[*deployment, "model_id"]
    )
    memory = GaugeMetricFamily(
        "sidecar_worker_resident_memory_bytes", "Resident memory of each worker process", labels=[*deployment, "worker"]
    )
    for deployment_id, local in ctx.deployments.local.items():
        pool = local.pool
        depth.add_metric([deployment_id], pool.queued)
        capacity.add_metric([deployment_id], pool.capacity)
        allocations.add_metric([deployment_id], pool.serving_workers)
        target.add_metric([deployment_id], local.model_threads)
        info.add_metric([deployment_id, local.config.get("model_id", deployment_id)], 1)
        for index, worker in enumerate(pool.describe_workers()):
            size = _resident_bytes(worker["pid"])
            if size is not None:
                memory.add_metric([deployment_id, str(index)], size)
    breaker = ctx.in_flight
    yield from (depth, capacity, allocations, target, info, memory)
    yield GaugeMetricFamily("sidecar_in_flight_requests_bytes", "Request bytes the node holds now", value=breaker.used)
    yield GaugeMetricFamily(
        "sidecar_in_flight_requests_limit_bytes", "The in-flight requests breaker's limit", value=breaker.limit
    )
    yield CounterMetricFamily(
        "sidecar_in_flight_requests_rejections", "Requests refused with 429 by the in-flight requests breaker",
        value=breaker.rejections,
    )  # fmt: skip


def _resident_bytes(pid: int | None) -> int | None:
    """A process's resident memory from /proc; None once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None
