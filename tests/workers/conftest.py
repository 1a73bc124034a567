import pytest

from tests.support.deploy import start, uploaded
from tests.support.node import module_node

node = module_node("--es-version", "8.0.0")  # the seed's parameters and shapes


@pytest.fixture(scope="module")
def es(node):
    """No client retries: these tests must see the 429s themselves."""
    return node.client(retry_on_status=(), max_retries=0)


@pytest.fixture(scope="module")
def minilm(node, es, traced_minilm):
    """MiniLM with one worker and a small queue: slow enough per batch to observe queueing."""
    model_id = uploaded(node.url, traced_minilm, "pool-minilm")
    start(es, model_id, model_threads=1, queue_capacity=40)
    return model_id
