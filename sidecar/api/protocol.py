"""The node's HTTP/1.1 connections: uvicorn's httptools protocol with bounds on a request's head and on slow peers.

llhttp (httptools) has no limit on the request line or the headers, and uvicorn keeps whatever arrives: a request
reaches the application only once its head is whole, so no middleware can bound it. Here bytes go to the parser no
faster than the head's budget allows, and a head over budget gets the 400 Elasticsearch answers (Netty's
`HttpRequestDecoder` with `http.max_initial_line_length` 4kb and `http.max_header_size`). A request whose head or
body stops arriving is cut off; so is a connection that never sends one (uvicorn only times out idle keep-alives).

A response sent before its request's body was whole (a refusal: credentials, the in-flight breaker, a body too
large) ends the connection: nothing more is read, the answer is given a moment to reach the peer, and the
connection is closed; the rest of the body is never parsed.
"""

from __future__ import annotations

import functools
import logging
from asyncio import TimerHandle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from sidecar.api.wire import PRODUCT_HEADER
from sidecar.errors import EsError
from sidecar.metrics import NodeMetrics

log = logging.getLogger(__name__)

_MAX_LINE_BYTES = 4096  # http.max_initial_line_length
_MIN_WINDOW_BYTES = 16 * 1024  # a body still arriving must bring this much in each read-timeout window
_LINGER_S = 2.0  # how long a refused request's connection stays open for its answer to arrive


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int  # the request line and the headers together
    read_timeout_s: float  # a head must be whole within it; a body must keep coming in each such window


def protocol_factory(limits: HttpLimits, metrics: NodeMetrics) -> Callable[..., BoundedHttpToolsProtocol]:
    """What `uvicorn.run(http=...)` takes: it calls the class with its config and state."""
    return functools.partial(BoundedHttpToolsProtocol, limits=limits, metrics=metrics)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HttpLimits, metrics: NodeMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.metrics = metrics
        self._head_left: int | None = limits.max_header_bytes  # None while a head is whole and its body arrives
        self._line_too_long = False
        self._window_bytes = 0
        self._clock: TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._start_clock()  # a connection must send its first request in time

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        self._window_bytes += len(data)
        # Feed a head no more than its budget at a time; once the head is whole, the rest goes in one piece.
        while data and self._head_left is not None and not self.transport.is_closing():
            piece, data = data[: self._head_left], data[self._head_left :]
            self._head_left -= len(piece)
            super().data_received(piece)
            if self._lingering or self._refused_line():
                return
            if self._head_left == 0:
                limit = self.limits.max_header_bytes
                self._refuse_head("too_long_http_header_exception", f"HTTP header is larger than {limit} bytes.")
                return
        if data and not self.transport.is_closing():
            super().data_received(data)

    # parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_clock()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._line_too_long = len(self.url) > _MAX_LINE_BYTES

    def on_headers_complete(self) -> None:
        self._head_left = None
        if not self._refused_line():  # refused before the application ever sees the request
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._lingering:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._lingering:
            return
        super().on_message_complete()
        self._head_left = self.limits.max_header_bytes
        self._stop_clock()

    def on_response_complete(self) -> None:
        # A queued pipelined request means this one's body was whole; else `more_body` says it is still coming.
        body_still_coming = not self.pipeline and self.cycle is not None and self.cycle.more_body
        if body_still_coming and not self.transport.is_closing():
            self._linger()
            return
        super().on_response_complete()

    # the head's budget

    def _refused_line(self) -> bool:
        if self._line_too_long and not self._lingering:
            self._refuse_head("too_long_http_line_exception", f"An HTTP line is larger than {_MAX_LINE_BYTES} bytes.")
        return self._line_too_long

    def _refuse_head(self, error_type: str, reason: str) -> None:
        """Elasticsearch's 400 for a head its decoder would not take, then the connection ends (without an answer
        when an earlier pipelined request's is still being written)."""
        self.metrics.refused_head(error_type)
        if self.cycle is None or self.cycle.response_complete:
            body = orjson.dumps(EsError(400, error_type, reason).envelope())
            headers = [*self.server_state.default_headers, PRODUCT_HEADER, (b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.transport.write(STATUS_LINE[400] + head + b"\r\n" + body)
        self._linger()

    def _linger(self) -> None:
        """Read no more, let the answer reach the peer, then close (unread bytes then make the close a reset)."""
        self._lingering = True
        self._stop_clock()
        self.flow.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)

    # the read clock: runs while a request (or the first one) is awaited, stops once its body is whole

    def _start_clock(self) -> None:
        self._stop_clock()
        self._window_bytes = 0
        self._clock = self.loop.call_later(self.limits.read_timeout_s, self._tick)

    def _stop_clock(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            self._clock = None

    def _tick(self) -> None:
        self._clock = None
        if self.transport.is_closing():
            return
        head_pending = self._head_left is not None
        if not self.flow.read_paused and (head_pending or self._window_bytes < _MIN_WINDOW_BYTES):
            log.debug("closing a connection from %s: its request is not arriving in time", self.client)
            self.transport.close()
            return
        self._window_bytes = 0  # while reading is paused, the node is the slow one
        self._clock = self.loop.call_later(self.limits.read_timeout_s, self._tick)
