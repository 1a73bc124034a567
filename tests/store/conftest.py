import contextlib
import os
import uuid

import pytest
from elasticsearch import Elasticsearch

from sidecar.store.elasticsearch import ElasticsearchStore
from sidecar.store.sqlite import SqliteStore
from tests.support.es_client import client
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.es_release import VERSIONS


def _credentials() -> dict[str, object]:
    if api_key := os.environ.get("SIDECAR_TEST_ES_API_KEY"):
        return {"api_key": api_key}
    if user := os.environ.get("SIDECAR_TEST_ES_USER"):
        return {"basic_auth": (user, os.environ.get("SIDECAR_TEST_ES_PASSWORD", ""))}
    return {}


REAL_URL = os.environ.get("SIDECAR_TEST_ES_URL")
# The cluster at SIDECAR_TEST_ES_URL when set, else the test double of every release (the store's tests are fast:
# the whole matrix).
RELEASES = ["real"] if REAL_URL else list(VERSIONS)


@pytest.fixture(scope="session")
def es_clusters():
    """A client for a release, its cluster started on first use and kept for the session."""
    with contextlib.ExitStack() as stack:
        clients: dict[str, Elasticsearch] = {}

        def get(release: str) -> Elasticsearch:
            if release not in clients:
                url = REAL_URL or stack.enter_context(EsClusterDouble(version=release)).url
                clients[release] = stack.enter_context(client(url, **_credentials()))
            return clients[release]

        yield get


@pytest.fixture(params=RELEASES)
def es_client(request, es_clusters):
    return es_clusters(request.param)


def _es_store_maker(es: Elasticsearch):
    """Make stores sharing one fresh index prefix, as nodes of one cluster would; `drop` deletes their indices."""
    prefix = f"sidecar-test-{uuid.uuid4().hex[:12]}"
    made: list[ElasticsearchStore] = []

    def make() -> ElasticsearchStore:
        made.append(ElasticsearchStore(es, prefix=prefix))
        return made[-1]

    def drop() -> None:
        if made:
            es.indices.delete(index=",".join(made[0].indices), ignore_unavailable=True)

    return make, drop


@pytest.fixture
def es_stores(es_client):
    make, drop = _es_store_maker(es_client)
    yield make
    drop()


@pytest.fixture(params=["sqlite", *(f"elasticsearch-{release}" for release in RELEASES)])
def make_store(request, tmp_path, es_clusters):
    """Every store backend, so one contract suite holds them all to the same behaviour.

    Each call makes another handle on the same fresh state, as the nodes of one cluster hold theirs.
    """
    if request.param == "sqlite":
        make, drop = (lambda: SqliteStore(tmp_path / "store.db")), (lambda: None)
    else:
        make, drop = _es_store_maker(es_clusters(request.param.removeprefix("elasticsearch-")))
    made = []

    def handle():
        made.append(make())
        return made[-1]

    yield handle
    for backend in made:
        backend.close()
    drop()


@pytest.fixture
def store(make_store):
    return make_store()
