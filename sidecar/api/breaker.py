"""The node's in-flight-requests circuit breaker: the request bytes the node holds, bounded across all connections.

Elasticsearch's `in_flight_requests` breaker (ChildMemoryCircuitBreaker, TRANSIENT) counts each request's content
from the moment it is read until its response is sent, and refuses a request that would take the total past
`network.breaker.inflight_requests.limit` with 429 `circuit_breaking_exception`. Here bytes are counted as they
arrive, so a body, chunked or not, is refused as soon as it would pass the limit rather than once it is whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sidecar.api.wire import byte_size
from sidecar.errors import EsError

_LABEL = "<http_request>"  # what Elasticsearch's RestController charges an HTTP request's content as


class InFlightRequests:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.rejections = 0  # requests refused since the node started, for `GET /metrics`

    @contextmanager
    def reservation(self) -> Iterator[Reservation]:
        """Bytes added while it is open stay charged until it closes, however the request ends."""
        reservation = Reservation(self)
        try:
            yield reservation
        finally:
            self.used -= reservation.size

    def _add(self, size: int) -> None:
        wanted = self.used + size
        if wanted > self.limit:
            self.rejections += 1
            raise circuit_breaking(wanted, self.limit)
        self.used = wanted


class Reservation:
    def __init__(self, breaker: InFlightRequests) -> None:
        self._breaker = breaker
        self.size = 0

    def add(self, size: int) -> None:
        self._breaker._add(size)
        self.size += size


def circuit_breaking(wanted: int, limit: int) -> EsError:
    """ChildMemoryCircuitBreaker.circuitBreak's message and CircuitBreakingException's fields."""
    reason = (
        f"[in_flight_requests] Data too large, data for [{_LABEL}] would be [{wanted}/{byte_size(wanted)}], "
        f"which is larger than the limit of [{limit}/{byte_size(limit)}]"
    )
    metadata = {"bytes_wanted": wanted, "bytes_limit": limit, "durability": "TRANSIENT"}
    return EsError(429, "circuit_breaking_exception", reason, metadata=metadata)
