"""The pipelines under `pipelines/`: rendered for a model, checked against the options Elasticsearch's processors
take, run with Elasticsearch's ingest semantics on what a node's inference endpoints answer, and installed by
`sidecar pipelines install` over HTTP on a stand-in cluster."""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sidecar.cli import main
from sidecar.elastic.pipelines import PIPELINES_DIR, TASKS, TEMPLATES, body, render
from sidecar.errors import EsError
from tests.support.es_ingest import IngestError, run_pipeline

Json = dict[str, Any]
COMPLETION_TASKS = ("ner", "text_classification", "zero_shot_classification")
TEXT = "Hi my name is Josh and I live in Berlin"
NOW = "2026-01-01T00:00:00.000Z"

# Each processor's own options, from Elasticsearch's processor reference: (required, optional).
COMMON_OPTIONS = {"tag", "description", "if", "ignore_failure", "on_failure"}
OPTIONS = {
    "inference": ({"model_id"}, {"input_output", "target_field", "field_map", "inference_config", "ignore_missing"}),
    "json": (
        {"field"},
        {"target_field", "add_to_root", "add_to_root_conflict_strategy", "allow_duplicate_keys", "strict_json_parsing"},
    ),
    "set": ({"field"}, {"value", "copy_from", "override", "ignore_empty_value", "media_type"}),
    "remove": ({"field"}, {"ignore_missing", "keep"}),
    "append": ({"field", "value"}, {"allow_duplicates", "media_type"}),
}
FAILURE_METADATA = {
    "on_failure_message",
    "on_failure_processor_type",
    "on_failure_processor_tag",
    "on_failure_pipeline",
    "timestamp",
}

# What a node's endpoint answers per task (completion: the task's result JSON as one string), from the
# result shapes Elasticsearch documents.
NER = {
    "predicted_value": "Hi my name is [Josh](PER&Josh) and I live in [Berlin](LOC&Berlin)",
    "entities": [
        {"entity": "Josh", "class_name": "PER", "class_probability": 0.99, "start_pos": 14, "end_pos": 18},
        {"entity": "Berlin", "class_name": "LOC", "class_probability": 0.98, "start_pos": 33, "end_pos": 39},
    ],
}
CLASSES = {
    "predicted_value": "POSITIVE",
    "top_classes": [
        {"class_name": "POSITIVE", "class_probability": 0.9, "class_score": 0.9},
        {"class_name": "NEGATIVE", "class_probability": 0.1, "class_score": 0.1},
    ],
    "prediction_probability": 0.9,
}
ANSWERS: dict[str, Any] = {
    "ner": json.dumps(NER),
    "text_classification": json.dumps(CLASSES),
    "zero_shot_classification": json.dumps({**CLASSES, "predicted_value": "travel"}),
    "text_embedding": [0.25, -0.5, 0.125],
    "text_expansion": {"berlin": 1.5, "josh": 0.75},
}


def written_by_elasticsearch(task: str) -> Json:
    """`ml.inference.<tag>` as Elasticsearch's own inference processor writes it: the result map, then model_id."""
    answer = ANSWERS[task]
    result = json.loads(answer) if task in COMPLETION_TASKS else {"predicted_value": answer}
    return {**result, "model_id": "my-model"}


def pipeline_for(task: str) -> Json:
    return body(task, model_id="my-model", field="body")


def every_processor(processors: list[Json]) -> Iterator[tuple[str, Json]]:
    for processor in processors:
        [(kind, options)] = processor.items()
        yield kind, options
        yield from every_processor(options.get("on_failure", []))


# rendering -------------------------------------------------------------------------------------------------------
ALL_FILES = sorted(str(path.relative_to(PIPELINES_DIR).with_suffix("")) for path in PIPELINES_DIR.rglob("*.json"))


def test_every_task_has_a_pipeline_file_and_the_vector_tasks_a_template() -> None:
    assert set(TASKS) | set(TEMPLATES.values()) | {"templates/semantic_text-example"} == set(ALL_FILES)


@pytest.mark.parametrize("name", ALL_FILES)
def test_every_file_renders_without_a_placeholder_left(name: str) -> None:
    values = {
        "model_id": "my-model",
        "field": "body",
        "pipeline_id": "my-pipeline",
        "index_pattern": "docs-*",
        "dims": 8,
    }
    rendered = json.dumps(body(name, **values))
    assert not re.search(r"(?<!\{)\{\{[a-z_]+\}\}(?!\})", rendered)
    assert "my-model" in rendered


def test_a_whole_placeholder_takes_its_values_type_and_keys_are_filled_too() -> None:
    values = {"model_id": "minilm", "field": "body", "pipeline_id": "embed", "index_pattern": "docs-*", "dims": 384}
    template = body(TEMPLATES["text_embedding"], **values)
    properties = template["template"]["mappings"]["properties"]
    vector = properties["ml"]["properties"]["inference"]["properties"]["text_embedding"]["properties"]
    assert vector["predicted_value"] == {"type": "dense_vector", "dims": 384, "similarity": "cosine"}
    assert properties["body"] == {"type": "text"}
    assert template["index_patterns"] == ["docs-*"]
    assert template["template"]["settings"] == {"index.default_pipeline": "embed"}


def test_the_semantic_text_example_names_the_models_endpoint() -> None:
    example = body("templates/semantic_text-example", model_id="minilm", field="body")
    assert example == {"mappings": {"properties": {"body": {"type": "semantic_text", "inference_id": "minilm"}}}}


def test_the_clusters_own_mustache_is_left_for_the_cluster() -> None:
    document = {"{{field}}": "{{{_ingest.on_failure_message}}} in {{field}}"}
    assert render(document, {"field": "body"}) == {"body": "{{{_ingest.on_failure_message}}} in body"}


def test_a_placeholder_without_a_value_is_refused() -> None:
    with pytest.raises(EsError, match=r"no value for the placeholder \[dims\]"):
        render({"dims": "{{dims}}"}, {"model_id": "m"})


# Elasticsearch's processor options -------------------------------------------------------------------------------
@pytest.mark.parametrize("task", TASKS)
def test_every_processor_takes_only_options_elasticsearch_knows(task: str) -> None:
    pipeline = pipeline_for(task)
    assert list(pipeline) == ["description", "processors", "on_failure"]
    for kind, options in every_processor(pipeline["processors"] + pipeline["on_failure"]):
        required, optional = OPTIONS[kind]
        assert required <= options.keys(), (kind, options)
        assert options.keys() <= required | optional | COMMON_OPTIONS, (kind, options)
        assert options.get("on_failure", [None]), "Elasticsearch refuses an empty on_failure list"
        if kind == "set":
            assert ("value" in options) != ("copy_from" in options), "set takes exactly one of value and copy_from"


@pytest.mark.parametrize("task", TASKS)
def test_the_model_is_reached_through_input_output(task: str) -> None:
    [inference] = [
        options for kind, options in every_processor(pipeline_for(task)["processors"]) if kind == "inference"
    ]
    assert inference["model_id"] == "my-model"
    # an inference endpoint refuses a document map: "is configured for the _inference API and does not accept
    # documents as input"; and a completion endpoint answers one input per call
    assert not {"target_field", "field_map", "inference_config"} & inference.keys()
    [mapping] = inference["input_output"]
    assert mapping["input_field"] == "body"
    assert "." in mapping["output_field"], "model_id is written next to the output: at the root without a dot"
    assert inference["on_failure"], "a failed call is recorded and the pipeline goes on"


@pytest.mark.parametrize("task", TASKS)
def test_every_failure_handler_records_the_failure_metadata(task: str) -> None:
    pipeline = pipeline_for(task)
    [inference] = [options for kind, options in every_processor(pipeline["processors"]) if kind == "inference"]
    for handlers in (inference["on_failure"], pipeline["on_failure"]):
        [record] = [options for kind, options in every_processor(handlers) if kind == "append"]
        assert record["field"] == "_source._ingest.inference_errors"
        snippets = re.findall(r"\{+_ingest\.(\w+)\}+", json.dumps(record["value"]))
        assert set(snippets) == FAILURE_METADATA
        assert all(f"{{{{{{_ingest.{name}}}}}}}" in json.dumps(record["value"]) for name in snippets), "unescaped"


# Elasticsearch's ingest semantics, as the cluster double runs them ---------------------------------------------
Endpoint = Callable[[str, str], Any]  # model id, text -> what the inference endpoint answers


def simulate(pipeline: Json, source: Json, endpoint: Endpoint, pipeline_id: str = "my-pipeline") -> Json:
    """One document through the pipeline as the cluster double's ingest runs it, `endpoint` answering each input."""

    async def infer(model_id: str, inputs: list[str]) -> list[Any]:
        return [endpoint(model_id, text) for text in inputs]

    return asyncio.run(run_pipeline(pipeline_id, pipeline, source, infer, NOW))


def answering(task: str, calls: list[tuple[str, str]] | None = None) -> Endpoint:
    def endpoint(model_id: str, text: str) -> Any:
        if calls is not None:
            calls.append((model_id, text))
        return copy.deepcopy(ANSWERS[task])

    return endpoint


def unreachable(model_id: str, text: str) -> Any:
    raise IngestError(f"Inference endpoint not found [{model_id}]")


@pytest.mark.parametrize("task", TASKS)
def test_a_document_carries_what_elasticsearchs_own_processor_writes(task: str) -> None:
    calls: list[tuple[str, str]] = []
    document = simulate(pipeline_for(task), {"body": TEXT}, answering(task, calls))
    assert calls == [("my-model", TEXT)]
    assert document == {"body": TEXT, "ml": {"inference": {task: written_by_elasticsearch(task)}}}
    assert list(document["ml"]["inference"][task]) == list(written_by_elasticsearch(task)), "key order"


@pytest.mark.parametrize("task", TASKS)
def test_a_document_that_runs_through_again_gets_a_fresh_result(task: str) -> None:
    once = simulate(pipeline_for(task), {"body": TEXT}, answering(task))
    assert simulate(pipeline_for(task), once, answering(task)) == once


@pytest.mark.parametrize("task", TASKS)
def test_a_failed_run_through_again_keeps_no_stale_result(task: str) -> None:
    once = simulate(pipeline_for(task), {"body": TEXT}, answering(task))
    again = simulate(pipeline_for(task), {**once, "body": "new text"}, unreachable)
    assert again["ml"]["inference"] == {}
    assert len(again["_ingest"]["inference_errors"]) == 1


@pytest.mark.parametrize("task", TASKS)
def test_a_failed_call_leaves_the_document_with_the_error_and_no_leftovers(task: str) -> None:
    document = simulate(pipeline_for(task), {"body": TEXT}, unreachable)
    error = {
        "message": "Inference endpoint not found [my-model]",
        "processor_type": "inference",
        "processor_tag": task,
        "pipeline": "my-pipeline",
        "timestamp": NOW,
    }
    assert document == {"body": TEXT, "_ingest": {"inference_errors": [error]}}


@pytest.mark.parametrize("task", TASKS)
def test_a_document_without_the_field_is_recorded_not_dropped(task: str) -> None:
    document = simulate(pipeline_for(task), {"title": TEXT}, answering(task))
    [error] = document["_ingest"]["inference_errors"]
    assert error["message"] == "field [body] not present as part of path [body]"
    assert set(document) == {"title", "_ingest"}


@pytest.mark.parametrize("task", COMPLETION_TASKS)
def test_a_completion_that_is_no_result_object_fails_the_pipeline_cleanly(task: str) -> None:
    document = simulate(pipeline_for(task), {"body": TEXT}, lambda model_id, text: "not a result object")
    [error] = document["_ingest"]["inference_errors"]
    assert (error["processor_type"], error["processor_tag"]) == ("json", f"{task}_result")
    assert set(document) == {"body", "_ingest"}


# installing -------------------------------------------------------------------------------------------------------
USER, PASSWORD = "elastic", "secret"
MINILM_ENDPOINT = {
    "inference_id": "minilm",
    "task_type": "text_embedding",
    "service": "custom",
    "service_settings": {
        "url": "http://sidecar-1:9700/_sidecar/custom/minilm",
        "dimensions": 384,
        "similarity": "cosine",
    },
}


class Cluster:
    """A stand-in for the three cluster APIs an install calls, over HTTP for the real client. It checks basic
    credentials as a secured cluster does, answers in Elasticsearch's envelope and keeps every request it accepted."""

    def __init__(self, endpoints: dict[str, Json]) -> None:
        self.endpoints = endpoints
        self.requests: list[tuple[str, str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Cluster:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, authorization: str, payload: Any) -> tuple[int, Json]:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if authorization != expected:
            reason = f"unable to authenticate user [{USER}] for REST request [{path}]"
            return 401, EsError(401, "security_exception", reason).envelope()
        self.requests.append((method, path, payload))
        kind, _, name = path.strip("/").rpartition("/")
        if method == "PUT" and kind in ("_ingest/pipeline", "_index_template"):
            return 200, {"acknowledged": True}
        if method == "GET" and kind == "_inference/text_embedding":
            if name in self.endpoints:
                return 200, {"endpoints": [self.endpoints[name]]}
            return 404, EsError(
                404, "resource_not_found_exception", f"Inference endpoint not found [{name}]"
            ).envelope()
        return 400, EsError(400, "", f"no handler found for uri [{path}] and method [{method}]").envelope()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _respond(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                payload = json.loads(self.rfile.read(length)) if length else None
                status, answer = cluster.answer(self.command, self.path, self.headers.get("authorization", ""), payload)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.send_header("x-elastic-product", "Elasticsearch")
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_PUT = _respond

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with Cluster({"minilm": MINILM_ENDPOINT}) as running:
        yield running


def install(cluster: Cluster, *args: str, password: str = PASSWORD) -> int:
    credentials = ["--es-url", cluster.url, "--es-user", USER, "--es-password", password]
    return main(["pipelines", "install", *args, *credentials])


def test_install_puts_the_rendered_pipeline(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert install(cluster, "ner", "--model-id", "my-ner") == 0
    assert cluster.requests == [
        ("PUT", "/_ingest/pipeline/my-ner-ner", body("ner", model_id="my-ner", field="message"))
    ]
    assert capsys.readouterr().out == "installed pipeline [my-ner-ner]\n"


def test_an_embedding_pipeline_comes_with_a_template_sized_by_the_endpoint(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    assert install(cluster, "text_embedding", "--model-id", "minilm", "--field", "body", "--pipeline-id", "embed") == 0
    [lookup, pipeline, template] = cluster.requests
    assert lookup == ("GET", "/_inference/text_embedding/minilm", None)
    assert pipeline == ("PUT", "/_ingest/pipeline/embed", body("text_embedding", model_id="minilm", field="body"))
    values = {"model_id": "minilm", "field": "body", "pipeline_id": "embed", "index_pattern": "embed-*", "dims": 384}
    assert template == ("PUT", "/_index_template/embed", body(TEMPLATES["text_embedding"], **values))
    assert capsys.readouterr().out == "installed pipeline [embed] and index template [embed] for [embed-*]\n"


def test_dims_on_the_command_line_need_no_endpoint(cluster: Cluster) -> None:
    assert install(cluster, "text_embedding", "--model-id", "e5", "--dims", "768", "--index-pattern", "docs-*") == 0
    assert [(method, path) for method, path, _ in cluster.requests] == [
        ("PUT", "/_ingest/pipeline/e5-text_embedding"),
        ("PUT", "/_index_template/e5-text_embedding"),
    ]
    template = cluster.requests[1][2]
    assert template["index_patterns"] == ["docs-*"]
    assert "768" in json.dumps(template["template"]["mappings"])


def test_without_an_endpoint_or_dims_nothing_is_written(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert install(cluster, "text_embedding", "--model-id", "unknown") == 1
    assert [method for method, _, _ in cluster.requests] == ["GET"]
    assert "no text_embedding inference endpoint [unknown]" in capsys.readouterr().err


def test_text_expansion_output_is_mapped_as_a_sparse_vector(cluster: Cluster) -> None:
    assert install(cluster, "text_expansion", "--model-id", "elser") == 0
    template = cluster.requests[1][2]
    output = template["template"]["mappings"]["properties"]["ml"]["properties"]["inference"]["properties"]
    assert output["text_expansion"]["properties"]["predicted_value"] == {"type": "sparse_vector"}


def test_the_clusters_refusal_is_reported(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    assert install(cluster, "ner", "--model-id", "my-ner", password="wrong") == 1
    assert capsys.readouterr().err == (
        "sidecar pipelines: unable to authenticate user [elastic] for REST request [/_ingest/pipeline/my-ner-ner]\n"
    )
    assert cluster.requests == []


def test_a_user_needs_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["pipelines", "install", "ner", "--model-id", "m", "--es-user", "elastic"])
    assert exited.value.code == 2
    assert "error: --es-user needs --es-password (or --es-password-file)" in capsys.readouterr().err
