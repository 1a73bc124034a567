import pytest

from tests.support.deploy import start, uploaded
from tests.support.node import module_node

MAX_BODY = 2_000_000

node = module_node("--max-body-bytes", str(MAX_BODY))
# Three models share this 2-core node: at low priority each takes one single-thread allocation and they may share
# cores (Elasticsearch places low-priority deployments beyond the node's processors); at normal priority the third
# would get no allocation.
LOW = {"priority": "low"}


@pytest.fixture(scope="module")
def deployed_classifier(node, es, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "api-classifier")
    start(es, model_id, **LOW)
    return model_id


@pytest.fixture(scope="module")
def deployed_ner(node, es, traced_ner):
    model_id = uploaded(node.url, traced_ner, "api-ner")
    start(es, model_id, **LOW)
    return model_id


@pytest.fixture(scope="module")
def deployed_minilm(node, es, traced_minilm):
    model_id = uploaded(node.url, traced_minilm, "api-minilm")
    start(es, model_id, **LOW)
    return model_id
