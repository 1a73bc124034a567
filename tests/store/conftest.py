import os
import uuid

import pytest
from elasticsearch import Elasticsearch

from sidecar.store.elasticsearch import ElasticsearchStore
from sidecar.store.sqlite import SqliteStore
from tests.support.es_double import ElasticsearchDouble


def _credentials() -> dict[str, object]:
    if api_key := os.environ.get("SIDECAR_TEST_ES_API_KEY"):
        return {"api_key": api_key}
    if user := os.environ.get("SIDECAR_TEST_ES_USER"):
        return {"basic_auth": (user, os.environ.get("SIDECAR_TEST_ES_PASSWORD", ""))}
    return {}


@pytest.fixture(scope="session")
def es_client():
    """The cluster at SIDECAR_TEST_ES_URL when set, else the in-process test double."""
    if url := os.environ.get("SIDECAR_TEST_ES_URL"):
        with Elasticsearch(url, **_credentials()) as client:
            yield client
        return
    with ElasticsearchDouble() as double, Elasticsearch(double.url) as client:
        yield client


@pytest.fixture
def es_stores(es_client):
    """Make stores sharing one fresh index prefix, as nodes of one cluster would; their indices go afterwards."""
    prefix = f"sidecar-test-{uuid.uuid4().hex[:12]}"
    made = []

    def make() -> ElasticsearchStore:
        made.append(ElasticsearchStore(es_client, prefix=prefix))
        return made[-1]

    yield make
    if made:
        es_client.indices.delete(index=",".join(made[0].indices), ignore_unavailable=True)


@pytest.fixture(params=["sqlite", "elasticsearch"])
def make_store(request, tmp_path):
    """Every store backend, so one contract suite holds them all to the same behaviour.

    Each call makes another handle on the same fresh state, as the nodes of one cluster hold theirs.
    """
    made = []

    def make():
        made.append(SqliteStore(tmp_path / "store.db") if request.param == "sqlite" else request.getfixturevalue("es_stores")())
        return made[-1]

    yield make
    for backend in made:
        backend.close()


@pytest.fixture
def store(make_store):
    return make_store()
