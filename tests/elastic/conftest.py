"""Nodes connected to a cluster: the recording double of each Elasticsearch release by default (`release`: every
release in es_release.VERSIONS; a module whose tests start nodes overrides it with fewer), the real cluster at
SIDECAR_TEST_ES_URL when set.

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

from tests.support.es_client import client
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.es_release import REPRESENTATIVE, VERSIONS
from tests.support.node import NodeProcess, free_port

REAL_URL = os.environ.get("SIDECAR_TEST_ES_URL")
ALL_RELEASES = [None] if REAL_URL else list(VERSIONS)
SOME_RELEASES = [None] if REAL_URL else list(REPRESENTATIVE)  # for modules that start nodes


class Cluster:
    """What the tests need of a cluster, through its REST API; `double` is None on a real cluster."""

    def __init__(self, url: str, credentials: dict[str, Any], double: EsClusterDouble | None = None) -> None:
        self.url = url
        self.double = double
        self.client = client(url, **credentials)
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
        """`_all` (every release from 8.12 serves it), in the later releases' shape (`inference_id`)."""
        body = self.client.perform_request("GET", "/_inference/_all").body
        for found in body.get("endpoints", body.get("models", [])):
            if found.get("inference_id", found.get("model_id")) == inference_id:
                return {"inference_id": inference_id, **{k: v for k, v in found.items() if k != "model_id"}}
        return None

    @property
    def services(self) -> frozenset[str]:
        """The inference services of the cluster's release (a real cluster: assumed a recent one)."""
        return self.double.release.services if self.double else frozenset({"custom", "hugging_face", "openai"})

    def put_pipeline(self, pipeline_id: str, body: dict[str, Any]) -> None:
        self.client.ingest.put_pipeline(id=pipeline_id, **body)

    def delete_pipeline(self, pipeline_id: str) -> None:
        self.client.options(ignore_status=404).ingest.delete_pipeline(id=pipeline_id)

    def delete_endpoint(self, inference_id: str) -> None:
        found = self.endpoint(inference_id)
        if found is not None:
            params = {"force": "true"} if self.double is None or self.double.release.delete_parameters else {}
            self.client.perform_request("DELETE", f"/_inference/{found['task_type']}/{inference_id}", params=params)


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


@pytest.fixture(scope="module", params=ALL_RELEASES)
def release(request: pytest.FixtureRequest) -> str | None:
    """The Elasticsearch release the module's double is (None: the real cluster)."""
    return request.param


@pytest.fixture(scope="module")
def cluster(release: str | None) -> Iterator[Cluster]:
    """A fresh double per module and release (tests change its license), or the real cluster."""
    if REAL_URL:
        yield Cluster(REAL_URL, _credentials())
        return
    with EsClusterDouble(version=release) as double:
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
