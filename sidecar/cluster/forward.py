"""Forwarding an infer to another node that serves the deployment: least pending first, retried on failure.

Inference is idempotent, so a node that cannot be reached, or that went away mid-request, is simply skipped and
the next candidate tried.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import aiohttp
import orjson

from sidecar.errors import EsError
from sidecar.timevalue import TimeValue

log = logging.getLogger(__name__)
FORWARDED_HEADER = "x-sidecar-forwarded"
INPUT_TYPE_HEADER = "x-sidecar-input-type"  # ingest | search: which prefix string the serving node applies
WAIT_HEADER = "x-sidecar-wait"  # the caller waits for a worker rather than take a 429 (the cluster's ingest)
_RETRYABLE_STATUSES = (429, 502, 503)


class NoRoute(Exception):
    """No other live node serves the deployment (or has room for it)."""


class Forwarder:
    def __init__(self, node_id: str, secret: str | None = None) -> None:
        """`secret`: the shared callback secret, which lets a forwarded infer past a secured node's caller check."""
        self._node_id = node_id
        self._secret = secret
        self._session: aiohttp.ClientSession | None = None
        self._open: Counter[str] = Counter()  # forwards in flight per node, to spread load between heartbeats

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def candidates(
        self, nodes: list[dict[str, Any]], serving: list[str], model_id: str, need_room: bool
    ) -> list[dict[str, Any]]:
        """Other live nodes with a started allocation, least pending requests first (as of their last heartbeat)."""
        out = []
        for node in nodes:
            if node["id"] == self._node_id or node["id"] not in serving:
                continue
            stats = node.get("deployments", {}).get(model_id, {})
            pending = stats.get("number_of_pending_requests", 0) + self._open[node["id"]]
            if need_room and pending >= stats.get("queue_capacity", pending + 1):
                continue
            out.append((pending, node))
        return [node for _, node in sorted(out, key=lambda pair: pair[0])]

    async def infer(
        self,
        candidates: list[dict[str, Any]],
        model_id: str,
        body: dict[str, Any],
        timeout: TimeValue,
        input_type: str | None = None,
        wait: bool = False,
    ) -> list[bytes]:
        """POST the 8.3+ `_infer` to each candidate in turn; per-document results come back serialized."""
        if not candidates:
            raise NoRoute()
        last: EsError | None = None
        for node in candidates:
            try:
                return await self._post(node, model_id, body, timeout, input_type, wait)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.warning("forwarding [%s] to node [%s] failed: %s; trying the next node", model_id, node["name"], exc)
            except EsError as error:
                if error.status not in _RETRYABLE_STATUSES:
                    raise
                last = error
        if last is not None:
            raise last
        raise NoRoute()

    async def _post(
        self,
        node: dict[str, Any],
        model_id: str,
        body: dict[str, Any],
        timeout: TimeValue,
        input_type: str | None,
        wait: bool,
    ) -> list[bytes]:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        url = f"{node['url']}/_ml/trained_models/{model_id}/_infer"
        headers = {"content-type": "application/json", FORWARDED_HEADER: self._node_id}
        if input_type:
            headers[INPUT_TYPE_HEADER] = input_type
        if wait:
            headers[WAIT_HEADER] = "true"
        if self._secret:
            headers["authorization"] = f"Bearer {self._secret}"
        self._open[node["id"]] += 1
        try:
            async with self._session.post(
                url,
                params={"timeout": timeout.text},
                data=orjson.dumps(body),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout.seconds + 5),
            ) as response:
                payload = orjson.loads(await response.read())
                status = response.status
        finally:
            self._open[node["id"]] -= 1
        if status != 200:
            raise error_from_body(payload, status)
        return [orjson.dumps(result) for result in payload["inference_results"]]


def error_from_body(payload: Any, status: int) -> EsError:
    """Rebuild the EsError another node answered, so the caller sees it unchanged."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, str):
        return EsError(status, "", error)
    if not isinstance(error, dict):
        return EsError(status, "exception", f"unexpected answer from node: {payload!r}"[:500])
    return _error(error, status)


def _error(error: dict[str, Any], status: int) -> EsError:
    cause = error.get("caused_by")
    return EsError(status, error.get("type", "exception"), error.get("reason", ""), _error(cause, status) if isinstance(cause, dict) else None)
