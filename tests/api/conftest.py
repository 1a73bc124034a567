import pytest

from tests.support.deploy import start, uploaded
from tests.support.node import module_node

MAX_BODY = 2_000_000

node = module_node("--max-body-bytes", str(MAX_BODY))


@pytest.fixture(scope="module")
def deployed_classifier(node, es, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "api-classifier")
    start(es, model_id)
    return model_id


@pytest.fixture(scope="module")
def deployed_ner(node, es, traced_ner):
    model_id = uploaded(node.url, traced_ner, "api-ner")
    start(es, model_id)
    return model_id


@pytest.fixture(scope="module")
def deployed_minilm(node, es, traced_minilm):
    model_id = uploaded(node.url, traced_minilm, "api-minilm")
    start(es, model_id)
    return model_id
