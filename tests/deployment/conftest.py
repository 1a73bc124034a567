import pytest

from tests.support.deploy import uploaded
from tests.support.node import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    process = NodeProcess(tmp_path_factory.mktemp("node") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node):
    return node.client()


@pytest.fixture(scope="module")
def ner_model(node, traced_ner):
    return uploaded(node.url, traced_ner)


@pytest.fixture(scope="module")
def classifier_model(node, traced_classifier):
    return uploaded(node.url, traced_classifier)
