"""The bounded queue, batching, timeouts and worker crashes, observed through a real node."""

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from elasticsearch import ApiError

from benchmarks.texts import LONG
from tests.support.deploy import infer


def status(es, model_id):
    return es.perform_request("GET", "/_sidecar/status").body["deployments"][model_id]


def node_stats(es, model_id):
    return es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]["deployment_stats"]["nodes"][0]


def test_more_docs_than_the_queue_holds_is_429_at_once(es, minilm):
    with pytest.raises(ApiError) as caught:
        infer(es, minilm, ["x"] * 41)
    assert caught.value.meta.status == 429
    assert caught.value.body["error"] == {
        "root_cause": [{"type": "es_rejected_execution_exception", "reason": "inference process queue is full. Unable to execute command"}],
        "type": "es_rejected_execution_exception",
        "reason": "inference process queue is full. Unable to execute command",
    }
    assert node_stats(es, minilm)["rejected_execution_count"] >= 1


def test_a_burst_past_the_queue_gets_429s_and_the_rest_succeed(es, minilm):
    def call(_):
        try:
            return len(infer(es, minilm, LONG[:2] * 8))
        except ApiError as error:
            return error.meta.status

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(call, range(12)))
    assert 429 in outcomes
    assert 16 in outcomes
    assert set(outcomes) <= {16, 429}


def test_timeout_while_queued_is_408_and_counted(es, minilm):
    before = node_stats(es, minilm).get("timeout_count", 0)
    blocker = threading.Thread(target=infer, args=(es, minilm, LONG * 8))
    blocker.start()
    time.sleep(0.2)
    with pytest.raises(ApiError) as caught:
        es.perform_request(
            "POST", f"/_ml/trained_models/{minilm}/_infer", params={"timeout": "50ms"},
            body={"docs": [{"text_field": "late"}]}, headers={"content-type": "application/json"},
        )  # fmt: skip
    blocker.join()
    assert caught.value.meta.status == 408
    assert caught.value.body["error"]["reason"] == "timeout [50ms] waiting for inference result"
    assert node_stats(es, minilm)["timeout_count"] == before + 1


def test_a_killed_worker_loses_nothing(es, minilm):
    texts = [f"{LONG[i % 3]} number {i}" for i in range(40)]
    expected = np.array([r["predicted_value"] for r in infer(es, minilm, texts)])
    [worker] = status(es, minilm)["workers"]
    result = {}
    caller = threading.Thread(target=lambda: result.update(out=infer(es, minilm, texts)))
    caller.start()
    time.sleep(0.5)
    os.kill(worker["pid"], signal.SIGKILL)
    caller.join(120)
    got = np.array([r["predicted_value"] for r in result["out"]])
    assert got.shape == expected.shape
    assert np.allclose(got, expected, atol=1e-5)
    assert status(es, minilm)["workers"][0]["pid"] != worker["pid"]
    assert "error_count" not in node_stats(es, minilm)


def test_a_caller_that_went_away_costs_no_forward_pass(es, node, minilm):
    from elasticsearch import ConnectionTimeout

    blocker = threading.Thread(target=infer, args=(es, minilm, LONG * 8))  # 24 documents keep the worker busy
    blocker.start()
    time.sleep(0.2)
    before = node_stats(es, minilm)["inference_count"]
    impatient = node.client(retry_on_status=(), max_retries=0, retry_on_timeout=False)
    with pytest.raises(ConnectionTimeout):
        impatient.options(request_timeout=0.2).perform_request(
            "POST", f"/_ml/trained_models/{minilm}/_infer",
            body={"docs": [{"text_field": t} for t in LONG * 3]}, headers={"content-type": "application/json"},
        )  # fmt: skip
    blocker.join()
    time.sleep(0.5)
    assert node_stats(es, minilm)["inference_count"] == before + 24
