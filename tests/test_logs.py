"""What a node writes to its log: one line per lifecycle event, ECS JSON with `--log-format json` (uvicorn's lines
too), an access log only with `--access-log`."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from tests.support.deploy import infer, start, uploaded
from tests.support.node import NodeProcess


def json_lines(node: NodeProcess) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in node.log().splitlines() if line.strip()]


def wait_for_line(node: NodeProcess, action: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any(line.get("event", {}).get("action") == action for line in json_lines(node)):
        assert time.monotonic() < deadline, f"no [{action}] line in:\n{node.log()}"
        time.sleep(0.2)


def test_json_lines_carry_ecs_fields_and_one_line_per_event(tmp_path: Path, traced_classifier: Any) -> None:
    node = NodeProcess(tmp_path / "data", "--log-format", "json", "--access-log").start()
    try:
        es = node.client()
        model_id = uploaded(node.url, traced_classifier, "logged-classifier")
        start(es, model_id)
        infer(es, model_id, ["one line per event"])
        worker = es.perform_request("GET", "/_sidecar/status").body["deployments"][model_id]["workers"][0]["pid"]
        os.kill(worker, signal.SIGKILL)
        wait_for_line(node, "worker-exited")
        es.ml.stop_trained_model_deployment(model_id=model_id)
        es.ml.delete_trained_model(model_id=model_id)
    finally:
        node.stop()
    lines = json_lines(node)
    for line in lines:
        assert {"@timestamp", "log.level", "message", "log", "event"} <= line.keys(), line
        assert line["log"]["logger"] and line["event"]["dataset"] in ("sidecar.log", "sidecar.access"), line
    events = Counter(line["event"].get("action") for line in lines if model_id in line["message"])
    assert {name: events[name] for name in ("model-stored", "model-definition-complete", "deployment-started")} == {
        "model-stored": 1,
        "model-definition-complete": 1,  # one line for the whole definition, none per part
        "deployment-started": 1,
    }
    assert (events["deployment-stopped"], events["model-deleted"], events["worker-exited"]) == (1, 1, 1)
    [started] = [line for line in lines if line["event"].get("action") == "deployment-started"]
    assert (started["log.level"], started["event"]["outcome"]) == ("info", "success")
    assert "model_threads [1], inference_threads [1]" in started["message"]
    [died] = [line for line in lines if line["event"].get("action") == "worker-exited"]
    assert (died["log.level"], died["event"]["outcome"]) == ("warning", "failure")
    uvicorn = [line for line in lines if line["log"]["logger"].startswith("uvicorn.error")]
    assert any("Uvicorn running on" in line["message"] for line in uvicorn), "uvicorn's own lines are ECS too"
    access = [line for line in lines if line["event"]["dataset"] == "sidecar.access"]
    [infer_line] = [line for line in access if line["url"]["original"] == f"/_ml/trained_models/{model_id}/_infer"]
    assert infer_line["http"] == {"request": {"method": "POST"}, "response": {"status_code": 200}, "version": "1.1"}
    assert infer_line["client"]["address"] == "127.0.0.1"


def test_text_lines_and_no_access_log_by_default(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data").start()
    try:
        node.client().info()
    finally:
        node.stop()
    log = node.log()
    assert "INFO uvicorn.error Uvicorn running on" in log
    assert "GET / HTTP/1.1" not in log
    assert not log.lstrip().startswith("{")
