"""Ingest pipelines as the test double runs them: the processors the project's pipelines use (`inference`, `json`,
`set`, `remove`, `append`), `if` null checks, and processor and pipeline `on_failure` handlers, with the semantics of
Elasticsearch's IngestService / CompoundProcessor. The `inference` processor calls an inference endpoint through
`infer`, which the cluster double backs with the endpoint's service (its request template, rate limit and retries).
"""

from __future__ import annotations

import copy
import datetime
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Json = dict[str, Any]
# endpoint id, inputs -> one result per input (a vector, a token -> weight map or a string); raises IngestError
Infer = Callable[[str, list[str]], Awaitable[list[Any]]]


class IngestError(Exception):
    """What a processor throws: a missing field, a failed inference call, a Painless null access."""


@dataclass
class ProcessorFailure(Exception):
    message: str
    kind: str
    tag: str

    def metadata(self, pipeline_id: str, timestamp: str) -> dict[str, str]:
        """The `_ingest.on_failure_*` values CompoundProcessor puts in an on_failure handler's context."""
        return {
            "on_failure_message": self.message,
            "on_failure_processor_type": self.kind,
            "on_failure_processor_tag": self.tag,
            "on_failure_pipeline": pipeline_id,
            "timestamp": timestamp,
        }


def now() -> str:
    """`_ingest.timestamp`: the time ingest started for the document, ISO 8601 in UTC with milliseconds."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def run_pipeline(pipeline_id: str, pipeline: Json, source: Json, infer: Infer, timestamp: str) -> Json:
    """One document through the pipeline: a failure its processor does not handle runs the pipeline's on_failure
    (none: the document fails with that error, raised as IngestError); the document as the handlers leave it is
    what gets indexed."""
    document = copy.deepcopy(source)
    try:
        for processor in pipeline.get("processors", []):
            await _run(processor, document, infer, pipeline_id, {"timestamp": timestamp})
    except ProcessorFailure as failure:
        if not pipeline.get("on_failure"):
            raise IngestError(failure.message) from None
        for handler in pipeline["on_failure"]:
            await _run(handler, document, infer, pipeline_id, failure.metadata(pipeline_id, timestamp))
    return document


async def _run(processor: Json, document: Json, infer: Infer, pipeline_id: str, metadata: dict[str, str]) -> None:
    """One processor; with an on_failure of its own, a failure runs those handlers and the pipeline goes on."""
    [(kind, options)] = processor.items()
    if kind not in _STEPS:
        raise IngestError(f"No processor type exists with name [{kind}]")
    try:
        if "if" in options and not _condition(options["if"], document):
            return
        await _STEPS[kind](options, document, infer, metadata)
    except (IngestError, ValueError, TypeError) as error:
        if options.get("ignore_failure"):
            return
        failure = ProcessorFailure(str(error), kind, options.get("tag", ""))
        if "on_failure" not in options:
            raise failure from None
        for handler in options["on_failure"]:
            await _run(handler, document, infer, pipeline_id, failure.metadata(pipeline_id, metadata["timestamp"]))


def _condition(script: str, document: Json) -> bool:
    """The null checks pipelines use, with Painless's rule: `?.` on null is null, `.` on null throws."""
    match = re.fullmatch(r"ctx((?:\??\.\w+)+) != null", script)
    if match is None:
        raise IngestError(f"the test double runs only null checks as conditions, not [{script}]")
    value: Any = document
    for safe, key in re.findall(r"(\??)\.(\w+)", match.group(1)):
        if value is None:
            if not safe:
                raise IngestError(f"cannot access [{key}] of null in [{script}]")
            return False
        value = value.get(key)
    return value is not None


def _path(field: str) -> list[str]:
    return field.removeprefix("_source.").split(".")


def get(document: Json, field: str) -> Any:
    value: Any = document
    for key in _path(field):
        if not isinstance(value, dict) or key not in value:
            raise IngestError(f"field [{key}] not present as part of path [{field}]")
        value = value[key]
    return value


def put(document: Json, field: str, value: Any, append: bool = False) -> None:
    """Set a value, making the objects on its path (IngestDocument.setFieldValue); `append` adds to the value there,
    or makes a list of the new values (appendFieldValue)."""
    *parents, leaf = _path(field)
    for key in parents:
        document = document.setdefault(key, {})
    values = value if isinstance(value, list) else [value]
    if append and leaf in document:
        existing = document[leaf] if isinstance(document[leaf], list) else [document[leaf]]
        document[leaf] = existing + values
    else:
        document[leaf] = values if append else value


def _has(document: Json, field: str) -> bool:
    try:
        get(document, field)
    except IngestError:
        return False
    return True


def _remove_field(document: Json, field: str, ignore_missing: bool) -> None:
    *parents, leaf = _path(field)
    try:
        parent = get(document, ".".join(parents)) if parents else document
        if not isinstance(parent, dict) or leaf not in parent:
            raise IngestError(f"field [{leaf}] not present as part of path [{field}]")
    except IngestError:
        if ignore_missing:
            return
        raise
    del parent[leaf]


def _mustache(value: Any, metadata: dict[str, str]) -> Any:
    """Template snippets in values; the unescaped `{{{_ingest.<name>}}}` form is the one pipelines here use."""
    if isinstance(value, dict):
        return {key: _mustache(item, metadata) for key, item in value.items()}
    if isinstance(value, list):
        return [_mustache(item, metadata) for item in value]
    if isinstance(value, str):
        rendered = re.sub(r"\{\{\{_ingest\.(\w+)\}\}\}", lambda match: metadata[match.group(1)], value)
        if "{{" in rendered:
            raise IngestError(f"a template snippet the test double does not render: {value}")
        return rendered
    return value


async def _inference(options: Json, document: Json, infer: Infer, metadata: dict[str, str]) -> None:
    """InferenceProcessor with `input_output` against an inference endpoint: one call per document with one string
    per mapping; each result written at its output_field, `model_id` next to the first
    (InferenceResults.writeResultToField)."""
    if "target_field" in options or "field_map" in options:
        raise IngestError(
            f"[{options['model_id']}] is configured for the _inference API and does not accept documents as input"
        )
    mappings = options["input_output"]
    mappings = mappings if isinstance(mappings, list) else [mappings]
    inputs = []
    for mapping in mappings:
        text = get(document, mapping["input_field"])
        if not isinstance(text, str):
            raise IngestError(
                f"input field [{mapping['input_field']}] cannot be processed because it is not a text field"
            )
        inputs.append(text)
    results = await infer(options["model_id"], inputs)
    if len(results) != len(inputs):
        raise IngestError(f"number of results [{len(results)}] does not match the number of inputs [{len(inputs)}]")
    for i, (mapping, result) in enumerate(zip(mappings, results, strict=True)):
        _write_result(document, mapping["output_field"], result)
        if i == 0:
            base = mapping["output_field"].rpartition(".")[0]
            _write_result(document, f"{base}.model_id" if base else "model_id", options["model_id"])


def _write_result(document: Json, field: str, value: Any) -> None:
    """A value already at the field is appended to, else the value is set as it is (writeResultToField)."""
    put(document, field, value, append=_has(document, field))


async def _json(options: Json, document: Json, infer: Infer, metadata: dict[str, str]) -> None:
    try:
        parsed = json.loads(get(document, options["field"]))
    except json.JSONDecodeError as exc:
        raise IngestError(str(exc)) from None
    put(document, options.get("target_field", options["field"]), parsed)


async def _set(options: Json, document: Json, infer: Infer, metadata: dict[str, str]) -> None:
    if "copy_from" not in options:
        put(document, options["field"], _mustache(options["value"], metadata))
        return
    try:
        value = copy.deepcopy(get(document, options["copy_from"]))
    except IngestError:
        if options.get("ignore_empty_value"):
            return
        raise
    if not (options.get("ignore_empty_value") and value in (None, "")):
        put(document, options["field"], value)


async def _remove(options: Json, document: Json, infer: Infer, metadata: dict[str, str]) -> None:
    fields = options["field"] if isinstance(options["field"], list) else [options["field"]]
    for field in fields:
        _remove_field(document, field, options.get("ignore_missing", False))


async def _append(options: Json, document: Json, infer: Infer, metadata: dict[str, str]) -> None:
    put(document, options["field"], _mustache(options["value"], metadata), append=True)


_STEPS = {"inference": _inference, "json": _json, "set": _set, "remove": _remove, "append": _append}


def references(node: Any, endpoint_id: str) -> bool:
    """An `inference` processor for the endpoint anywhere in a pipeline (InferenceProcessorInfoExtractor)."""
    if isinstance(node, list):
        return any(references(item, endpoint_id) for item in node)
    if not isinstance(node, dict):
        return False
    processor = node.get("inference")
    if isinstance(processor, dict) and processor.get("model_id") == endpoint_id:
        return True
    return references(list(node.values()), endpoint_id)
