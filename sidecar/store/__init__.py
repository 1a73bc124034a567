"""Where nodes keep shared state: `open_store(settings)` picks the backend `--store` names."""

from __future__ import annotations

from sidecar.settings import Settings
from sidecar.store.base import Store


def open_store(settings: Settings) -> Store:
    """`--store elasticsearch`: indices in the `--es-url` cluster; otherwise the SQLite file (`sqlite:<file>`)."""
    if settings.store == "elasticsearch":
        from elasticsearch import Elasticsearch

        from sidecar.elastic.client import client_options
        from sidecar.store.elasticsearch import ElasticsearchStore

        return ElasticsearchStore(Elasticsearch(settings.es_url, request_timeout=30, **client_options(settings)))
    from sidecar.store.sqlite import SqliteStore

    return SqliteStore(settings.store_path)
