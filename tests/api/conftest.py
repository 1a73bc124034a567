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


@pytest.fixture(scope="module")
def deployed_classifier(node, es, traced_classifier):
    from tests.support.deploy import start, uploaded

    model_id = uploaded(node.url, traced_classifier, "api-classifier")
    start(es, model_id)
    return model_id


@pytest.fixture(scope="module")
def deployed_ner(node, es, traced_ner):
    from tests.support.deploy import start, uploaded

    model_id = uploaded(node.url, traced_ner, "api-ner")
    start(es, model_id)
    return model_id


@pytest.fixture(scope="module")
def deployed_minilm(node, es, traced_minilm):
    from tests.support.deploy import start, uploaded

    model_id = uploaded(node.url, traced_minilm, "api-minilm")
    start(es, model_id)
    return model_id
