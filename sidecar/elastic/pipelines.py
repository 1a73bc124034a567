"""`sidecar pipelines install`: put the ingest pipeline of one task, bound to one model, on the cluster.

The bodies are the JSON files under `pipelines/` (index templates under `pipelines/templates/`; they ship inside the
package, as `sidecar/pipelines/`, and the top-level `pipelines` links there), kept as a person
would paste them into Kibana's Dev Tools, with `{{name}}` placeholders filled in here. The cluster's own mustache,
`{{{_ingest.on_failure_message}}}`, has three braces and dotted names and is left for the cluster to render.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from elastic_transport import TransportError
from elasticsearch import AsyncElasticsearch

from sidecar.credentials import add_es_credentials
from sidecar.elastic.client import call, connect
from sidecar.errors import EsError, illegal_argument
from sidecar.settings import Settings

PIPELINES_DIR = Path(__file__).resolve().parents[1] / "pipelines"  # package data; `pipelines/` links here
TASKS = ("ner", "text_classification", "zero_shot_classification", "text_embedding", "text_expansion")
# Tasks whose output needs a mapping before the first document: vectors are not what dynamic mapping guesses.
TEMPLATES = {
    "text_embedding": "templates/text_embedding-template",
    "text_expansion": "templates/text_expansion-template",
}
DEFAULT_FIELD = "message"
DEFAULT_ES_URL = "http://127.0.0.1:9200"
_PLACEHOLDER = re.compile(r"(?<!\{)\{\{([a-z_]+)\}\}(?!\})")

Value = str | int


def render(document: Any, values: Mapping[str, Value]) -> Any:
    """Fill every placeholder in keys and strings. A string that is one placeholder becomes the value itself, so
    `"{{dims}}"` renders as a number; a placeholder with no value is an error, never left for the cluster."""
    if isinstance(document, dict):
        return {_fill(key, values): render(item, values) for key, item in document.items()}
    if isinstance(document, list):
        return [render(item, values) for item in document]
    if isinstance(document, str):
        whole = _PLACEHOLDER.fullmatch(document)
        return _value(whole.group(1), values) if whole else _fill(document, values)
    return document


def _fill(text: str, values: Mapping[str, Value]) -> str:
    return _PLACEHOLDER.sub(lambda match: str(_value(match.group(1), values)), text)


def _value(name: str, values: Mapping[str, Value]) -> Value:
    if name not in values:
        raise illegal_argument(f"no value for the placeholder [{name}]")
    return values[name]


def body(name: str, **values: Value) -> Any:
    """`pipelines/<name>.json` with its placeholders filled in."""
    return render(json.loads((PIPELINES_DIR / f"{name}.json").read_text()), values)


async def install(
    es: AsyncElasticsearch,
    task: str,
    model_id: str,
    *,
    pipeline_id: str | None = None,
    field: str = DEFAULT_FIELD,
    index_pattern: str | None = None,
    dims: int | None = None,
) -> str:
    """PUT the task's pipeline, and the index template mapping its output where the task has one; say what was
    written. Everything is rendered before the first write, so a missing value leaves the cluster untouched."""
    pipeline_id = pipeline_id or f"{model_id}-{task}"
    values: dict[str, Value] = {"model_id": model_id, "field": field, "pipeline_id": pipeline_id}
    template = None
    if task in TEMPLATES:
        values["index_pattern"] = index_pattern or f"{pipeline_id}-*"
        if task == "text_embedding":
            values["dims"] = dims or await endpoint_dims(es, model_id)
        template = body(TEMPLATES[task], **values)
    await call(es, "PUT", f"/_ingest/pipeline/{quote(pipeline_id, safe='')}", body(task, **values))
    if template is None:
        return f"installed pipeline [{pipeline_id}]"
    await call(es, "PUT", f"/_index_template/{quote(pipeline_id, safe='')}", template)
    return f"installed pipeline [{pipeline_id}] and index template [{pipeline_id}] for [{values['index_pattern']}]"


async def endpoint_dims(es: AsyncElasticsearch, model_id: str) -> int:
    """The vector size the cluster learnt when the model's node registered its text_embedding endpoint."""
    hint = "start the model's deployment on a node connected to this cluster, or pass --dims"
    try:
        found = await call(es, "GET", f"/_inference/text_embedding/{quote(model_id, safe='')}")
    except EsError as error:
        if error.status == 404:
            raise illegal_argument(
                f"no text_embedding inference endpoint [{model_id}] on the cluster: {hint}"
            ) from None
        raise
    endpoints = found.get("endpoints") or found.get("models") or [{}]  # `models` until 8.13
    dims = endpoints[0].get("service_settings", {}).get("dimensions")
    if not isinstance(dims, int):
        raise illegal_argument(f"the inference endpoint [{model_id}] does not state its dimensions: {hint}")
    return dims


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    command = actions.add_parser("install", help="render a task's pipeline for one model and PUT it on the cluster")
    command.add_argument("task", choices=TASKS)
    command.add_argument("--model-id", required=True, help="the deployed model; its inference endpoint has this id")
    command.add_argument("--pipeline-id", help="default: <model id>-<task>")
    command.add_argument(
        "--field", default=DEFAULT_FIELD, help=f"the document field to infer on (default: {DEFAULT_FIELD})"
    )
    command.add_argument("--index-pattern", help="indices the index template applies to (default: <pipeline id>-*)")
    command.add_argument(
        "--dims", type=int, help="text_embedding vector size (default: read from the inference endpoint)"
    )
    command.add_argument("--es-url", default=DEFAULT_ES_URL, help=f"the cluster (default: {DEFAULT_ES_URL})")
    add_es_credentials(command, "the cluster user's")
    command.add_argument("--es-ca-certs", type=Path, help="CA bundle for an https cluster")


def run_pipelines(args: argparse.Namespace) -> int:
    """Install, and report failures in one line."""
    try:
        print(asyncio.run(_install(args)))
    except EsError as error:
        print(f"sidecar pipelines: {error.reason}", file=sys.stderr)
        return 1
    except TransportError as error:
        print(f"sidecar pipelines: cannot reach {args.es_url}: {error.message}", file=sys.stderr)
        return 1
    return 0


async def _install(args: argparse.Namespace) -> str:
    settings = Settings(
        es_url=args.es_url,
        es_api_key=args.es_api_key,
        es_user=args.es_user,
        es_password=args.es_password,
        es_ca_certs=args.es_ca_certs,
    )
    es = connect(settings)
    try:
        return await install(
            es,
            args.task,
            args.model_id,
            pipeline_id=args.pipeline_id,
            field=args.field,
            index_pattern=args.index_pattern,
            dims=args.dims,
        )
    finally:
        await es.close()
