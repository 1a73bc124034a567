"""A deployment's inference cache on this node: results by input, least recently used out first, within `cache_size`.

Elasticsearch caches in each node's `pytorch_inference` process (from 8.4), keyed by the token ids it is sent, so
whatever changes the tokens (text, prefix string, truncation) changes the key; the task's post-processing runs after
the cache there. Here a worker returns finished results, so the key holds the task options as well. It lives in the
API process, so a hit costs no queue, no IPC and no forward pass. A hit still counts as an inference in `_stats`, as
Elasticsearch counts it (`inference_count` includes `inference_cache_hit_count`).

Its size is an estimate: each entry counts its text's UTF-8 bytes, its options key and its serialized result.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import orjson
from prometheus_client import Counter

Key = tuple[str, bytes]  # (the text as the model reads it, prefix included; the options unless the deployment's own)
_PERIOD_MS = 60_000  # Elasticsearch's reporting period for the `_last_minute` figures


class InferenceCache:
    def __init__(self, size_bytes: int, epoch: Any = None, hits: Counter | None = None, misses: Counter | None = None):
        """`epoch`: the deployment's `cache_epoch` when this cache was made (a `_clear` anywhere changes it);
        `hits` and `misses`: the node's Prometheus counters for the deployment."""
        self.size_bytes = size_bytes
        self.epoch = epoch
        self._hits_counter = hits
        self._misses_counter = misses
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._used = 0
        self.hit_count = 0
        self.last_hit_ms: int | None = None
        self._minutes = _PerMinute()

    @property
    def enabled(self) -> bool:
        return self.size_bytes > 0

    @staticmethod
    def options_key(options: dict[str, Any] | None) -> bytes:
        """`None` (the deployment's own options) keys as nothing; an update keys as its canonical JSON."""
        return b"" if options is None else orjson.dumps(options, option=orjson.OPT_SORT_KEYS)

    def lookup(self, keys: list[Key]) -> list[bytes | None]:
        """Each key's result, or None; hits become the most recently used and are counted."""
        if not self.enabled:
            return [None] * len(keys)
        found: list[bytes | None] = []
        for key in keys:
            result = self._entries.get(key)
            if result is not None:
                self._entries.move_to_end(key)
            found.append(result)
        hits = sum(result is not None for result in found)
        self._count(hits, len(keys) - hits)
        return found

    def put(self, key: Key, result: bytes) -> None:
        """Keep a result, evicting the least recently used until it fits; one larger than the cache is not kept."""
        size = _size(key, result)
        if not self.enabled or size > self.size_bytes or key in self._entries:
            return
        while self._used + size > self.size_bytes:
            old_key, old_result = self._entries.popitem(last=False)
            self._used -= _size(old_key, old_result)
        self._entries[key] = result
        self._used += size

    def clear(self, epoch: Any = None) -> None:
        """Drop every entry (the counters stay, as Elasticsearch's do); `epoch` is the `_clear` that asked."""
        self._entries.clear()
        self._used = 0
        self.epoch = epoch

    def follow(self, epoch: Any) -> None:
        """Clear if a `_clear` on any node changed the deployment's epoch since this cache last looked."""
        if epoch != self.epoch:
            self.clear(epoch)

    @property
    def used_bytes(self) -> int:
        return self._used

    def hits_last_minute(self) -> int:
        return self._minutes.last_period()

    def _count(self, hits: int, misses: int) -> None:
        if hits:
            self.hit_count += hits
            self.last_hit_ms = int(time.time() * 1000)
            self._minutes.add(hits)
            if self._hits_counter is not None:
                self._hits_counter.inc(hits)
        if misses and self._misses_counter is not None:
            self._misses_counter.inc(misses)


class _PerMinute:
    """Counts per minute-long period from its creation; reports the last complete one, as Elasticsearch's
    `PyTorchResultProcessor` reports its `_last_minute` figures."""

    def __init__(self) -> None:
        self._start = time.monotonic()
        self._period = 0
        self._current = 0
        self._previous = 0

    def add(self, count: int) -> None:
        self._roll()
        self._current += count

    def last_period(self) -> int:
        self._roll()
        return self._previous

    def _roll(self) -> None:
        period = int((time.monotonic() - self._start) * 1000 // _PERIOD_MS)
        if period != self._period:
            self._previous = self._current if period == self._period + 1 else 0
            self._current = 0
            self._period = period


def _size(key: Key, result: bytes) -> int:
    return len(key[0].encode()) + len(key[1]) + len(result)
