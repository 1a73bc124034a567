"""The per-deployment queue: bounded in documents, drained in batches bounded by documents and tokens."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sidecar.timevalue import TimeValue


@dataclass(eq=False)
class Item:
    """One request's documents waiting for a forward pass; its future gets one result per document."""

    texts: list[str]
    options: dict[str, Any]
    timeout: TimeValue  # as the caller gave it, for the 408 message
    deadline: float  # time.monotonic() after which nobody waits for the answer
    future: asyncio.Future[list[Any]]
    tokens: int  # estimated, for the batch budget
    queued_at: float  # time.monotonic() when it was queued, for the queue-wait metric
    retries: int = 0

    @property
    def size(self) -> int:
        return len(self.texts)

    @property
    def abandoned(self) -> bool:
        """The caller timed out, went away, or was already answered."""
        return self.future.done()


class BoundedQueue:
    """FIFO of items; `capacity` counts documents, as Elasticsearch counts inference requests."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Item] = deque()
        self.docs = 0

    def __len__(self) -> int:
        return len(self._items)

    def has_room(self, docs: int) -> bool:
        return self.docs + docs <= self.capacity

    def append(self, item: Item) -> None:
        self._items.append(item)
        self.docs += item.size

    def push_front(self, item: Item) -> None:
        """Give a retried item its place back at the head of the line."""
        self._items.appendleft(item)
        self.docs += item.size

    def next_batch(self, max_docs: int, max_tokens: int) -> tuple[list[Item], list[Item]]:
        """Take items in order while they fit the budgets (the first always fits).

        Returns (batch, expired): expired items are removed so they never cost a forward pass.
        """
        batch: list[Item] = []
        expired: list[Item] = []
        docs = tokens = 0
        now = time.monotonic()
        while self._items:
            item = self._items[0]
            if item.abandoned or item.deadline <= now:
                self._pop()
                if not item.abandoned:
                    expired.append(item)
                continue
            if batch and (docs + item.size > max_docs or tokens + item.tokens > max_tokens):
                break
            self._pop()
            batch.append(item)
            docs += item.size
            tokens += item.tokens
        return batch, expired

    def drain(self) -> list[Item]:
        items = list(self._items)
        self._items.clear()
        self.docs = 0
        return items

    def _pop(self) -> Item:
        item = self._items.popleft()
        self.docs -= item.size
        return item
