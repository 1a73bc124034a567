"""Trained model configs: validation on PUT and the stored form that GET returns."""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

from sidecar.errors import EsError, illegal_argument, status_exception, validation_failed
from sidecar.models import fields
from sidecar.models.definition import decode_base64
from sidecar.models.tokenization.base import check_released, parse_failure

NATIVE_INDEX = ".ml-inference-native-000002"  # where 9.x keeps NLP definitions and vocabularies
CONFIG_VERSION = "12.0.0"  # MlConfigVersion.CURRENT reported by 9.x in a config's `version`
NLP_TASKS = (
    "ner",
    "text_classification",
    "text_embedding",
    "zero_shot_classification",
    "fill_mask",
    "question_answering",
    "text_similarity",
    "text_expansion",
    "pass_through",
)
_ID_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")
_ID_LIMIT = 64
# TrainedModelConfig's strict parser: each field and the JSON types it takes
_FIELDS = {
    "model_id": fields.STRING, "created_by": fields.STRING, "version": fields.STRING, "description": fields.STRING,
    "create_time": fields.VALUE, "tags": fields.STRING_ARRAY, "metadata": fields.OBJECT, "input": fields.OBJECT,
    "definition": fields.OBJECT, "compressed_definition": fields.STRING,
    "estimated_heap_memory_usage_bytes": fields.LONG, "model_size_bytes": fields.LONG,
    "estimated_operations": fields.LONG, "license_level": fields.STRING, "default_field_map": fields.OBJECT,
    "inference_config": fields.OBJECT, "location": fields.OBJECT, "model_type": fields.STRING,
    "platform_architecture": fields.STRING, "prefix_strings": fields.OBJECT, "model_package": fields.OBJECT,
}  # fmt: skip
_PARSER = "trained_model_config"
_INPUT_PARSER = "trained_model_config_input"
_INPUT_FIELD_NAMES = "field_names"
_READ_ONLY = ("version", "created_by", "create_time", "license_level", "location", "model_package")
DEFINITION_FIELDS = ("definition", "compressed_definition")  # stored, shown only by GET's include=definition
# TrainedModelType.PYTORCH's default input: a model PUT without `input` reads its text from a document's "input" field
_DEFAULT_INPUT_FIELD = "input"
DEFER_DECOMPRESSION = "defer_definition_decompression"
# TrainedModelType.typeFromTrainedModel: the model type each kind of `trained_model` in a definition has
_DEFINITION_TYPES = {"tree": "tree_ensemble", "ensemble": "tree_ensemble", "lang_ident_neural_network": "lang_ident"}
_MAX_INFLATED_BYTES = 256 * 1024 * 1024  # a compressed definition never inflates into more memory than this

BUILTIN_LANG_IDENT: dict[str, Any] = {
    "model_id": "lang_ident_model_1",
    "model_type": "lang_ident",
    "created_by": "_xpack",
    "version": "7.6.0",
    "create_time": 1575548914594,
    "model_size_bytes": 1053992,
    "estimated_operations": 39629,
    "license_level": "basic",
    "description": "Model used for identifying language from arbitrary input text.",
    "tags": ["lang_ident", "prepackaged"],
    "input": {"field_names": ["text"]},
    "inference_config": {"classification": {"num_top_classes": 0, "top_classes_results_field": "top_classes",
                                            "results_field": "predicted_value", "num_top_feature_importance_values": 0,
                                            "prediction_field_type": "string"}},
}  # fmt: skip


def model_id_errors(model_id: str) -> list[str]:
    """MlStrings id rules, with Elasticsearch's messages."""
    errors = []
    if not _ID_PATTERN.fullmatch(model_id) or model_id == "_all":
        errors.append(
            f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
            "underscores; must start and end with alphanumeric"
        )
    if len(model_id) > _ID_LIMIT:
        errors.append(f"Invalid model_id; '{model_id}' cannot contain more than {_ID_LIMIT} characters.")
    return errors


def build_config(
    model_id: str, body: dict[str, Any], defer_decompression: bool, claims: Callable[[str], bool]
) -> dict[str, Any]:
    """Validate a PUT body and return the config as it will be stored (GET shows a definition only on request).

    `claims(version)`: whether the claimed Elasticsearch release is `version` or later (what it knows of)."""
    from sidecar.models.tasks import validate_task_config  # task rules live with each task

    body = _parsed(body)
    if body.get("model_id", model_id) != model_id:
        raise illegal_argument(
            f"Inconsistent model_id; '{body['model_id']}' specified in the body differs from '{model_id}' "
            "specified as a URL argument"
        )
    errors = _creation_errors(model_id, body)
    if errors:
        raise validation_failed(errors)
    model_type = body.get("model_type") or "tree_ensemble"
    _check_deferred_size(body, defer_decompression)
    inference_config = body["inference_config"]
    if model_type == "pytorch":
        inference_config = _nlp_inference_config(inference_config, validate_task_config, claims)
        _refuse_parsed_definition(model_id, body, defer_decompression)
    return _stored(model_id, model_type, inference_config, body)


def _check_deferred_size(body: dict[str, Any], defer_decompression: bool) -> None:
    """PutTrainedModelAction.Request.validate: a definition left compressed must come with its size."""
    size = body.get("model_size_bytes") or body.get("estimated_heap_memory_usage_bytes")
    if defer_decompression and not size and body.get("compressed_definition") is not None:
        raise validation_failed(
            [f"when [{DEFER_DECOMPRESSION}] is true and a compressed definition is provided, model_size_bytes must be set"]
        )


def _refuse_parsed_definition(model_id: str, body: dict[str, Any], defer_decompression: bool) -> None:
    """A pytorch model's definition comes in parts: a definition in the config, once parsed (an inline one always,
    a compressed one unless deferred), is the kind of model it describes, never pytorch
    (TransportPutTrainedModelAction). Only a deferred compressed definition is stored unread."""
    if body.get("definition") is not None:
        definition_type = _definition_type(body["definition"])
        if definition_type is None:  # TrainedModelDefinition's builder, run inside the config's parser
            error = parse_failure(_PARSER, "definition")
            error.caused_by = illegal_argument("[trained_model] must not be null.")
            raise error
    elif body.get("compressed_definition") is not None and not defer_decompression:
        # the builder's refusal escapes the transport action as itself (rendering UNCONFIRMED)
        definition_type = _definition_type(_inflated(model_id, body["compressed_definition"]))
        if definition_type is None:
            raise illegal_argument("[trained_model] must not be null.")
    else:
        return
    raise status_exception(400, f"model_type [pytorch] does not match the model definition type [{definition_type}]")


def _definition_type(definition: dict[str, Any]) -> str | None:
    trained_model = definition.get("trained_model")
    if not isinstance(trained_model, dict) or len(trained_model) != 1:
        return None
    return _DEFINITION_TYPES.get(next(iter(trained_model)), "tree_ensemble")


def _inflated(model_id: str, compressed: str) -> dict[str, Any]:
    """InferenceToXContentCompressor.inflate: gzip, then JSON; what cannot be read is Elasticsearch's 400."""
    data = decode_base64(_PARSER, "compressed_definition", compressed)
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        text = inflater.decompress(data, _MAX_INFLATED_BYTES)
        definition = json.loads(text) if not inflater.unconsumed_tail else None
    except (zlib.error, ValueError):
        definition = None
    if not isinstance(definition, dict):
        raise status_exception(400, f"Failed to parse definition for [{model_id}]")
    return definition


def _parsed(body: dict[str, Any]) -> dict[str, Any]:
    """The body with every field of the type its parser declares; numbers and string arrays read as Elasticsearch
    reads them."""
    fields.check_fields(_PARSER, body, _FIELDS)
    given = [name for name in body if name in DEFINITION_FIELDS and body[name] is not None]
    if len(given) == 2:  # LazyModelDefinition's setters, each refusing the other's value
        error = parse_failure(_PARSER, given[1])
        error.caused_by = illegal_argument("both [compressed_definition] and [definition] cannot be set.")
        raise error
    if body.get("compressed_definition") is not None:
        decode_base64(_PARSER, "compressed_definition", body["compressed_definition"])
    parsed = dict(body)
    for name in ("estimated_heap_memory_usage_bytes", "model_size_bytes", "estimated_operations"):
        if name in parsed:
            parsed[name] = fields.long_value(_PARSER, name, parsed[name])
    if "tags" in parsed:
        parsed["tags"] = fields.string_array(_PARSER, "tags", parsed["tags"])
    if "input" in parsed:
        parsed["input"] = _nested(parsed["input"], "input", _input)
    for name in ("default_field_map", "prefix_strings"):  # maps of strings
        if name in parsed and not all(isinstance(v, str) for v in parsed[name].values()):
            raise parse_failure(_PARSER, name)
    inference_config = parsed.get("inference_config", {})
    if not all(isinstance(settings, dict) for settings in inference_config.values()):
        raise parse_failure(_PARSER, "inference_config")
    return parsed


def _input(value: dict[str, Any]) -> dict[str, Any]:
    """TrainedModelInput's parser."""
    fields.check_fields(_INPUT_PARSER, value, {"field_names": fields.STRING_ARRAY})
    if "field_names" not in value:
        raise illegal_argument(f"Required [{_INPUT_FIELD_NAMES}]")
    return {"field_names": fields.string_array(_INPUT_PARSER, _INPUT_FIELD_NAMES, value["field_names"])}


def _nested(value: dict[str, Any], name: str, parse: Any) -> Any:
    """An inner object's parse error, wrapped the way ObjectParser wraps it."""
    try:
        return parse(value)
    except EsError as inner:
        error = parse_failure(_PARSER, name)
        error.caused_by = inner
        raise error from None


def _creation_errors(model_id: str, body: dict[str, Any]) -> list[str]:
    errors = []
    has_definition = any(body.get(name) is not None for name in DEFINITION_FIELDS)
    if has_definition and body.get("location") is not None:
        errors.append("[definition] and [location] are both defined but only one can be used.")
    if body.get("model_type") is None and not has_definition:
        errors.append("[model_type] must be set if [definition] is not defined.")
    if not isinstance(body.get("inference_config"), dict):
        errors.append("[inference_config] must not be null.")
    errors += model_id_errors(model_id)
    tags = body.get("tags", [])
    if any(model_id_errors(t) for t in tags):
        errors.append(
            f"Invalid tags {_java_list(tags)}; must only can contain lowercase alphanumeric (a-z and 0-9), hyphens "
            "or underscores, must start and end with alphanumeric, and must be less than 64 characters."
        )
    elif model_id in tags:
        errors.append("none of the tags must equal the model_id")
    if not body.get("input", {"field_names": [_DEFAULT_INPUT_FIELD]})["field_names"]:
        errors.append("[input.field_names] must not be empty")
    errors += [f"illegal to set [{key}] at inference model creation" for key in _READ_ONLY if key in body]
    return errors


def _nlp_inference_config(inference_config: dict[str, Any], validate: Any, claims: Callable[[str], bool]) -> dict[str, Any]:
    if len(inference_config) != 1 or next(iter(inference_config)) not in NLP_TASKS:
        names = ", ".join(inference_config)
        raise illegal_argument(f"Unknown or unsupported inference config [{names}] for a [pytorch] model")
    task, settings = next(iter(inference_config.items()))
    if "vocabulary" in settings:
        raise illegal_argument("illegal setting [vocabulary] on inference model creation")
    check_released(settings.get("tokenization"), claims)
    validated = validate(task, settings)
    ordered: dict[str, Any] = {}
    for key, value in validated.items():  # Elasticsearch writes the vocabulary just before the tokenization
        if key == "tokenization":
            ordered["vocabulary"] = {"index": NATIVE_INDEX}
        ordered[key] = value
    return {task: ordered}


def _stored(model_id: str, model_type: str, inference_config: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Field order of TrainedModelConfig.toXContent."""
    config: dict[str, Any] = {"model_id": model_id, "model_type": model_type}
    if "platform_architecture" in body:
        config["platform_architecture"] = body["platform_architecture"]
    config |= {
        "created_by": "api_user",
        "version": CONFIG_VERSION,
        "create_time": int(time.time() * 1000),
        "model_size_bytes": int(body.get("model_size_bytes") or body.get("estimated_heap_memory_usage_bytes") or 0),
        "estimated_operations": int(body.get("estimated_operations") or 0),
        "license_level": "platinum",
    }
    if body.get("description") is not None:
        config["description"] = body["description"]
    config["tags"] = body.get("tags") or []
    if body.get("metadata") is not None:
        config["metadata"] = body["metadata"]
    config["input"] = body.get("input") or {"field_names": [_DEFAULT_INPUT_FIELD]}
    if body.get("default_field_map"):
        config["default_field_map"] = body["default_field_map"]
    config["inference_config"] = inference_config
    if model_type == "pytorch":
        config["location"] = {"index": {"name": NATIVE_INDEX}}
    if body.get("prefix_strings") is not None:
        config["prefix_strings"] = body["prefix_strings"]
    for name in DEFINITION_FIELDS:
        if body.get(name) is not None:
            config[name] = body[name]
    return config


def _java_list(values: list[str]) -> str:
    return "[" + ", ".join(values) + "]"
