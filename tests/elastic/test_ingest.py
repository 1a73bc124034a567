"""Ingest end to end: a `_bulk` with the project's text_embedding pipeline, on a cluster of each representative
release, whose `inference` processor calls the node through the model's endpoint with the release's service,
pacing and retries; every document is indexed with its vector, or with the failure in `_ingest.inference_errors`.

Runs against es_release.REPRESENTATIVE (it starts a node and a deployment per release).
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from sidecar.elastic.pipelines import body
from tests.elastic.conftest import SOME_RELEASES
from tests.support.deploy import infer, started, uploaded

OVERLOAD_DOCS, BULK_DOCS, CONNECTIONS = 3000, 500, 2


@pytest.fixture(scope="module", params=SOME_RELEASES)
def release(request):
    return request.param


@pytest.fixture(scope="module")
def node(cluster, tmp_path_factory):
    process = cluster.node(tmp_path_factory.mktemp("ingest") / "data")
    yield process
    process.stop()


@pytest.fixture(scope="module")
def model(cluster, node, traced_dense):
    """A deployment with one worker and a short queue, so a large bulk overloads it; and its pipeline."""
    model_id = uploaded(node.url, traced_dense, "ingest-dense")
    assert "reason" not in started(node.client(), model_id, number_of_allocations=1, queue_capacity=8)
    cluster.put_pipeline("ingest-embed", body("text_embedding", model_id=model_id, field="body"))
    yield model_id
    cluster.delete_pipeline("ingest-embed")
    node.client().ml.delete_trained_model(model_id=model_id, force=True)


def bulk(cluster, index, texts, pipeline="ingest-embed"):
    """`texts`: strings (ids 0, 1, ...) or (id, text) pairs."""
    lines = []
    for i, text in enumerate(texts):
        doc_id, text = text if isinstance(text, tuple) else (i, text)
        lines += [{"index": {"_index": index, "_id": str(doc_id)}}, {"body": text}]
    es = cluster.client.options(request_timeout=600)
    return es.bulk(operations=lines, pipeline=pipeline, refresh=True).body


def source(cluster, index, doc_id):
    return cluster.client.get(index=index, id=doc_id)["_source"]


def test_every_document_gets_the_vector_the_model_gives(cluster, node, model):
    texts = [f"document number {i} about ingest" for i in range(50)]
    answer = bulk(cluster, "ingest-small", texts)
    assert not answer["errors"], answer["items"][:3]
    direct = infer(node.client(), model, texts[:3])
    for i in range(3):
        written = source(cluster, "ingest-small", str(i))["ml"]["inference"]["text_embedding"]
        assert written["model_id"] == model
        assert np.allclose(written["predicted_value"], direct[i]["predicted_value"], atol=1e-5)
    assert all(
        len(source(cluster, "ingest-small", str(i))["ml"]["inference"]["text_embedding"]["predicted_value"]) == 32
        for i in range(len(texts))
    )


def test_a_failed_call_leaves_the_document_indexed_with_the_error(cluster, node, model):
    cluster.put_pipeline("ingest-nowhere", body("text_embedding", model_id="no-such-model", field="body"))
    try:
        answer = bulk(cluster, "ingest-failed", ["lost"], pipeline="ingest-nowhere")
    finally:
        cluster.delete_pipeline("ingest-nowhere")
    assert not answer["errors"]
    document = source(cluster, "ingest-failed", "0")
    [error] = document["_ingest"]["inference_errors"]
    assert (error["processor_type"], error["pipeline"]) == ("inference", "ingest-nowhere")
    assert "no-such-model" in error["message"]
    assert "ml" not in document or "text_embedding" not in document["ml"].get("inference", {})


def test_a_bulk_far_beyond_the_nodes_queue_loses_no_vector(cluster, node, model):
    """Thousands of documents against one worker with a queue of 8, as a client sends them: bulks of 500 from two
    connections at once. The cluster sends each document's call as fast as its rate limit allows, over at most 20
    connections, and retries a 429 only as the release does. Every document must end with its vector.

    (A single bulk of more than 2,000 documents loses the rest in the cluster's own request queue,
    `xpack.inference.http.request_executor.queue_capacity`, whatever the node does: every document of a bulk
    starts its pipeline at once.)"""
    texts = [f"overload document {i} with a few more words to embed" for i in range(OVERLOAD_DOCS)]
    batches = [list(enumerate(texts))[start : start + BULK_DOCS] for start in range(0, OVERLOAD_DOCS, BULK_DOCS)]
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        answers = list(pool.map(lambda batch: bulk(cluster, "ingest-overload", batch), batches))
    assert not any(answer["errors"] for answer in answers)
    failed = []
    for i in range(OVERLOAD_DOCS):
        document = source(cluster, "ingest-overload", str(i))
        if "_ingest" in document:
            failed.append(document["_ingest"]["inference_errors"][0]["message"])
    assert failed == [], f"{len(failed)} of {OVERLOAD_DOCS} documents lost their vector: {failed[:3]}"
