"""The official client as a test speaks to a cluster of any release: its requests name `compatible-with=8`, which
8.x and 9.x both take, as an 8.x client's would (the 9.x client names 9, which 8.x refuses)."""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch

_COMPATIBLE_9 = "compatible-with=9"


def client(url: str, **options: Any) -> Elasticsearch:
    es = Elasticsearch(url, **options)
    send = es.transport.perform_request

    def perform_request(method: str, target: str, *, headers: Any = None, **rest: Any) -> Any:
        if headers is not None:
            for name in ("accept", "content-type"):
                if _COMPATIBLE_9 in headers.get(name, ""):
                    headers[name] = headers[name].replace(_COMPATIBLE_9, "compatible-with=8")
        return send(method, target, headers=headers, **rest)

    es.transport.perform_request = perform_request  # type: ignore[method-assign]
    return es
