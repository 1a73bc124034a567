"""(e) Bulk ingest from several cluster nodes at three times the node's capacity, as Elasticsearch's inference
services send it to a `custom` endpoint.

Each simulated cluster node opens at most 20 connections to the node (`xpack.inference.http.max_connections`,
HttpClientManager); requests beyond them wait for a connection, as the Apache client's lease queue makes them wait.
It sends one request of `batch` inputs at a time (the endpoint's `batch_size`) at most `requests_per_minute / 60`
times a second (RequestExecutorService's RateLimiter: no burst), and handles the answer as the cluster does:
a 429 or a connection failure is retried after a random wait of half to all of a bound that starts at 1 s and
doubles up to 5 s (RetryableAction, RetrySettings), while less than 30 s have passed and, from 8.15, at most 3
attempts in all (RetryingHttpSender's MAX_RETRIES counts attempts); any other failure is final (CustomResponseHandler
does not retry a 5xx). An input whose request fails for good is lost: the cluster indexes the document without its
vector.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from benchmarks.texts import numbered

CONNECTIONS = 20  # xpack.inference.http.max_connections
_INITIAL_DELAY_S, _MAX_DELAY_S, _RETRY_TIMEOUT_S = 1.0, 5.0, 30.0  # RetrySettings' defaults
MAX_ATTEMPTS = 3  # RetryingHttpSender from 8.15; 8.12-8.14 retry until the 30 s are spent


@dataclass
class Tally:
    sent: int = 0
    done: int = 0
    lost: int = 0
    refused: int = 0  # 429 answers, retried or not
    first: float = field(default_factory=time.monotonic)
    last: float = 0.0


class _RateLimiter:
    """`per_minute` tokens, at most one held (RequestExecutorService's ACCUMULATED_TOKENS_LIMIT)."""

    def __init__(self, per_minute: int) -> None:
        self._interval = 60.0 / per_minute
        self._next = time.monotonic()

    async def acquire(self) -> None:
        now = time.monotonic()
        self._next = max(self._next, now)
        wait, self._next = self._next - now, self._next + self._interval
        if wait > 0:
            await asyncio.sleep(wait)


async def bulk_ingest(
    url: str, texts: list[str], cluster_nodes: int, docs_per_s: float, seconds: float, batch: int, per_minute: int
) -> dict[str, Any]:
    """Offer `docs_per_s` inputs a second for `seconds`, spread over `cluster_nodes`; wait until each request has
    succeeded or been given up, and count."""
    tally = Tally()
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),  # no read timeout (HttpClient)
        )
        for _ in range(cluster_nodes)
    ]
    limiters = [_RateLimiter(per_minute) for _ in range(cluster_nodes)]
    interval = batch / docs_per_s  # between two requests of the whole cluster
    tasks: list[asyncio.Task[None]] = []
    try:
        start, n, run = time.monotonic(), 0, time.time_ns()
        while (due := start + n * interval) < start + seconds:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            inputs = [numbered(texts[(n * batch + i) % len(texts)], f"{run}-{n * batch + i}") for i in range(batch)]
            node = n % cluster_nodes
            tasks.append(asyncio.create_task(_send(sessions[node], limiters[node], url, inputs, tally)))
            n += 1
        await asyncio.gather(*tasks)
    finally:
        for session in sessions:
            await session.close()
    elapsed = tally.last - tally.first
    return {
        "inputs": tally.sent,
        "done": tally.done,
        "lost": tally.lost,
        "responses_429": tally.refused,
        "seconds": elapsed,
        "docs_per_s": tally.done / elapsed if elapsed > 0 else 0.0,
    }


async def _send(
    session: aiohttp.ClientSession, limiter: _RateLimiter, url: str, inputs: list[str], tally: Tally
) -> None:
    tally.sent += len(inputs)
    body = orjson.dumps({"input": inputs, "input_type": "ingest"})  # the registered template, rendered
    start, bound, attempts = time.monotonic(), _INITIAL_DELAY_S, 0
    while True:
        attempts += 1
        await limiter.acquire()
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
                status, payload = response.status, await response.read()
        except (aiohttp.ClientError, OSError):
            status, payload = 0, b""  # an IOException: always retryable
        if status == 200 and len(orjson.loads(payload)["data"]) == len(inputs):
            tally.done += len(inputs)
            tally.last = time.monotonic()
            return
        tally.refused += status == 429
        retryable = status in (0, 429)
        if not retryable or attempts >= MAX_ATTEMPTS or time.monotonic() - start >= _RETRY_TIMEOUT_S:
            tally.lost += len(inputs)
            tally.last = time.monotonic()
            return
        await asyncio.sleep(random.uniform(bound / 2, bound))
        bound = min(bound * 2, _MAX_DELAY_S)
