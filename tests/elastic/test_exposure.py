"""A node listening beyond loopback starts only with someone checking its callers, or when told `--insecure`."""

import pytest

from sidecar.elastic.exposure import is_loopback
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.node import NodeProcess


def refusal(data_dir, *args):
    """The one line a node prints when it refuses to start."""
    node = NodeProcess(data_dir, "--host", "0.0.0.0", *args)
    with pytest.raises(RuntimeError, match="node exited with 2"):
        node.start()
    [line] = node.log().strip().splitlines()
    return line


def test_no_authentication_no_start(tmp_path):
    assert refusal(tmp_path / "data") == (
        "sidecar: error: refusing to listen on [0.0.0.0] without authentication: "
        "connect to a secured cluster with --es-url, or pass --insecure"
    )


def test_a_cluster_without_security_is_no_authentication(tmp_path):
    with EsClusterDouble(security=False) as double:
        assert refusal(tmp_path / "data", "--es-url", double.url) == (
            f"sidecar: error: refusing to listen on [0.0.0.0]: the cluster at [{double.url}] has security disabled; "
            "pass --insecure to serve without authentication"
        )


def test_insecure_says_otherwise(tmp_path):
    NodeProcess(tmp_path / "data", "--host", "0.0.0.0", "--insecure").start().stop()


def test_loopback_addresses():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.5", "node.example"]))
