"""The node's Prometheus metrics: one registry per node, the series every part of the node feeds, and what is read
only when Prometheus scrapes (queues, allocations, workers' memory), so nothing costs a request for them.

Labels are bounded and never secret: a route's template (never its raw path), a method, a status, a deployment's id
(a name the operator chose), a worker's index. Never a user, a credential or a text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

HEAD_REFUSALS = ("too_long_http_line_exception", "too_long_http_header_exception")  # sidecar.api.protocol's
# seconds: a forward pass of a small model on one core is milliseconds; a large batch on a busy node, seconds
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)  # documents; the batch limit is --max-batch-docs


class NodeMetrics:
    """The registry `GET /metrics` renders (not the library's global one: several nodes in one process never mix),
    with the node's process metrics (`process_resident_memory_bytes`, CPU, open files) on it."""

    def __init__(self) -> None:
        disable_created_metrics()  # a `_created` gauge beside every counter doubles the page for what no query reads
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        add = self.registry
        self.requests = Counter(
            "sidecar_http_requests", "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"], registry=add,
        )  # fmt: skip
        self.refused_heads = Counter(
            "sidecar_http_refused_heads", "Requests refused with 400 before routing: request line or headers too long",
            ["error_type"], registry=add,
        )  # fmt: skip
        for error_type in HEAD_REFUSALS:
            self.refused_heads.labels(error_type)
        self.documents = _deployment_counter("sidecar_inference_documents", "Documents through a forward pass", add)
        self.inference_seconds = Histogram(
            "sidecar_inference_duration_seconds", "A batch's time in its worker: tokenizing, forward pass, results",
            ["deployment"], buckets=_LATENCY_BUCKETS, registry=add,
        )  # fmt: skip
        self.queue_wait_seconds = Histogram(
            "sidecar_inference_queue_wait_seconds", "A request's time in the queue until a worker takes it",
            ["deployment"], buckets=_LATENCY_BUCKETS, registry=add,
        )  # fmt: skip
        self.batch_size = Histogram(
            "sidecar_inference_batch_size", "Documents per batch sent to a worker",
            ["deployment"], buckets=_BATCH_BUCKETS, registry=add,
        )  # fmt: skip
        self.rejections = _deployment_counter(
            "sidecar_inference_rejections", "Requests refused with 429: the deployment's queue was full", add
        )
        self.timeouts = _deployment_counter(
            "sidecar_inference_timeouts", "Requests answered 408: no result within the request's timeout", add
        )
        self.worker_restarts = _deployment_counter(
            "sidecar_worker_restarts", "Worker processes that died and are being replaced", add
        )
        # The inference cache does not exist yet: these read 0 until the cache counts its lookups here.
        self.cache_hits = _deployment_counter("sidecar_inference_cache_hits", "Inference cache hits", add)
        self.cache_misses = _deployment_counter("sidecar_inference_cache_misses", "Inference cache misses", add)

    def deployment(self, deployment_id: str) -> DeploymentMetrics:
        return DeploymentMetrics(self, deployment_id)

    def refused_head(self, error_type: str) -> None:
        self.refused_heads.labels(error_type).inc()

    def read_at_scrape(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Add series computed from the node's state each time Prometheus scrapes."""
        self.registry.register(_Scraped(source))


class DeploymentMetrics:
    """One deployment's series, fed by its worker pool as it works. They exist (at 0) from the deployment's start
    here, so a rate is defined before its first request."""

    def __init__(self, metrics: NodeMetrics, deployment_id: str) -> None:
        self._documents = metrics.documents.labels(deployment_id)
        self._inference = metrics.inference_seconds.labels(deployment_id)
        self._queue_wait = metrics.queue_wait_seconds.labels(deployment_id)
        self._batch_size = metrics.batch_size.labels(deployment_id)
        self._rejections = metrics.rejections.labels(deployment_id)
        self._timeouts = metrics.timeouts.labels(deployment_id)
        self._restarts = metrics.worker_restarts.labels(deployment_id)
        self.cache_hits = metrics.cache_hits.labels(deployment_id)
        self.cache_misses = metrics.cache_misses.labels(deployment_id)

    def batch_taken(self, docs: int, waits: Iterable[float]) -> None:
        self._batch_size.observe(docs)
        for seconds in waits:
            self._queue_wait.observe(seconds)

    def batch_done(self, docs: int, elapsed_ms: float) -> None:
        self._documents.inc(docs)
        self._inference.observe(elapsed_ms / 1000)

    def rejected(self) -> None:
        self._rejections.inc()

    def timed_out(self) -> None:
        self._timeouts.inc()

    def worker_died(self) -> None:
        self._restarts.inc()


class _Scraped(Collector):
    def __init__(self, source: Callable[[], Iterable[Metric]]) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return self._source()

    def describe(self) -> Iterable[Metric]:
        return ()  # its series come and go with deployments: nothing to check names against at registration


def _deployment_counter(name: str, documentation: str, registry: CollectorRegistry) -> Counter:
    return Counter(name, documentation, ["deployment"], registry=registry)
