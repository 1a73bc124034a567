import pytest

from tests.support.deploy import uploaded
from tests.support.node import module_node

node = module_node("--es-version", "8.0.0")  # the seed's rules: the model on every node, threads lowered


@pytest.fixture(scope="module")
def ner_model(node, traced_ner):
    return uploaded(node.url, traced_ner)


@pytest.fixture(scope="module")
def classifier_model(node, traced_classifier):
    return uploaded(node.url, traced_classifier)
