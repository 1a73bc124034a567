import pytest

from tests.support.node import NodeProcess

MAX_BODY = 2_000_000


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess(tmp_path_factory.mktemp("node") / "data", "--max-body-bytes", str(MAX_BODY)).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node):
    return node.client()
