"""Nodes connected to a cluster: the recording double by default, the real cluster at SIDECAR_TEST_ES_URL when set.

A real cluster must reach the nodes: SIDECAR_TEST_CALLBACK_HOST names this machine as the cluster sees it (for a
cluster in Docker, `host.docker.internal`); the nodes then listen on every interface, unauthenticated (`--insecure`).
Credentials: SIDECAR_TEST_ES_API_KEY, or SIDECAR_TEST_ES_USER and SIDECAR_TEST_ES_PASSWORD.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch, NotFoundError

from tests.support.es_cluster_double import EsClusterDouble
from tests.support.node import NodeProcess, free_port

REAL_URL = os.environ.get("SIDECAR_TEST_ES_URL")


class Cluster:
    """What the tests need of a cluster, through its REST API; `double` is None on a real cluster."""

    def __init__(self, url: str, credentials: dict[str, Any], double: EsClusterDouble | None = None) -> None:
        self.url = url
        self.double = double
        self.client = Elasticsearch(url, **credentials)
        self.node_args = tuple(_node_arguments(credentials))

    def node(self, data_dir: Path, *args: str, port: int | None = None) -> NodeProcess:
        """A started node connected to this cluster."""
        port = port or free_port()
        reach = (
            ()
            if self.double
            else ("--host", "0.0.0.0", "--insecure", "--advertise-url", f"http://{_callback_host()}:{port}")
        )
        return NodeProcess(data_dir, "--es-url", self.url, *self.node_args, *reach, *args, port=port).start()

    def endpoint(self, inference_id: str) -> dict[str, Any] | None:
        try:
            [found] = self.client.perform_request("GET", f"/_inference/{inference_id}").body["endpoints"]
        except NotFoundError:
            return None
        return found

    def put_pipeline(self, pipeline_id: str, body: dict[str, Any]) -> None:
        self.client.ingest.put_pipeline(id=pipeline_id, **body)

    def delete_pipeline(self, pipeline_id: str) -> None:
        self.client.options(ignore_status=404).ingest.delete_pipeline(id=pipeline_id)

    def delete_endpoint(self, inference_id: str) -> None:
        self.client.options(ignore_status=404).inference.delete(inference_id=inference_id, force=True)


def _node_arguments(credentials: dict[str, Any]) -> list[str]:
    if "api_key" in credentials:
        return ["--es-api-key", credentials["api_key"]]
    if "basic_auth" in credentials:
        user, password = credentials["basic_auth"]
        return ["--es-user", user, "--es-password", password]
    return []


def _credentials() -> dict[str, Any]:
    if api_key := os.environ.get("SIDECAR_TEST_ES_API_KEY"):
        return {"api_key": api_key}
    if user := os.environ.get("SIDECAR_TEST_ES_USER"):
        return {"basic_auth": (user, os.environ.get("SIDECAR_TEST_ES_PASSWORD", ""))}
    return {}


def _callback_host() -> str:
    return os.environ.get("SIDECAR_TEST_CALLBACK_HOST", "127.0.0.1")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A fresh double per module (tests change its version and license), or the real cluster."""
    if REAL_URL:
        yield Cluster(REAL_URL, _credentials())
        return
    with EsClusterDouble() as double:
        yield Cluster(double.url, {}, double)


@pytest.fixture
def double(cluster: Cluster) -> EsClusterDouble:
    """The recording double; tests that read its records or change its version skip on a real cluster."""
    if cluster.double is None:
        pytest.skip("needs the recording double")
    return cluster.double


@pytest.fixture(scope="session")
def traced_dense(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A 32-wide sentence-transformers model: a text_embedding deployment that starts in a second."""
    from sidecar.importer.trace import trace_model
    from tests.support.models import tiny_sentence_bert

    root = tmp_path_factory.mktemp("tiny-dense")
    return trace_model(tiny_sentence_bert(root / "model"), "text_embedding", root / "traced")
