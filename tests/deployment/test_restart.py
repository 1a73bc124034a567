"""A node that restarts brings its deployments back; SIGTERM finishes queued work before the node exits."""

import signal
import threading
import time

from benchmarks.texts import LONG
from tests.support.deploy import infer, start, uploaded
from tests.support.node import NodeProcess

GRACEFUL = (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled once shutdown is complete


def wait_started(es, model_id, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
        if stats.get("deployment_stats", {}).get("state") == "started":
            return stats["deployment_stats"]
        time.sleep(0.2)
    raise AssertionError(f"{model_id} did not start again")


def test_restart_restores_deployments(tmp_path, traced_classifier):
    data = tmp_path / "data"
    first = NodeProcess(data).start()
    es = first.client()
    model_id = uploaded(first.url, traced_classifier, "survivor")
    start(es, model_id, queue_capacity=77)
    before = infer(es, model_id, ["a wonderful film"])
    node_id = es.perform_request("GET", "/_sidecar/status").body["node_id"]
    assert first.stop() in GRACEFUL

    second = NodeProcess(data, port=first.port).start()
    try:
        es = second.client()
        assert es.perform_request("GET", "/_sidecar/status").body["node_id"] == node_id
        stats = wait_started(es, model_id)
        assert stats["queue_capacity"] == 77
        assert infer(es, model_id, ["a wonderful film"]) == before
    finally:
        second.stop()


def test_sigterm_answers_what_was_queued_then_exits(tmp_path, traced_minilm):
    node = NodeProcess(tmp_path / "data").start()
    es = node.client()
    model_id = uploaded(node.url, traced_minilm, "graceful")
    start(es, model_id, model_threads=1)
    outcome = {}
    caller = threading.Thread(target=lambda: outcome.update(results=infer(es, model_id, LONG * 10)))
    caller.start()
    time.sleep(0.5)
    started = time.monotonic()
    assert node.stop(signal.SIGTERM, timeout=60) in GRACEFUL
    caller.join(10)
    assert len(outcome["results"]) == 30
    assert time.monotonic() - started < 60
    assert "Finished server process" in node.log()
