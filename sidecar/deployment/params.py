"""`_start`'s parameters: Elasticsearch's names (8.3+ and the seed's), defaults, parsing and validation, and the
deployment document they make."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

from sidecar.api.params import Params
from sidecar.deployment.states import AllocationStatus, AssignmentState
from sidecar.errors import EsError, illegal_argument, status_exception, validation_failed
from sidecar.timevalue import TimeValue, parse_time
from sidecar.workers.spec import PRECISIONS

WAIT_FOR_ORDER = tuple(AllocationStatus)
NORMAL, LOW = "normal", "low"
_ACTION = "cluster:admin/xpack/ml/trained_models/deployment/start"
# stored name -> accepted names (StartTrainedModelDeploymentAction.Request: the 8.3+ name, the seed's as its alias)
_INT_PARAMS = {
    "inference_threads": ("inference_threads", "threads_per_allocation"),
    "model_threads": ("model_threads", "number_of_allocations"),
    "queue_capacity": ("queue_capacity",),
}
_STRING_PARAMS = ("deployment_id", "priority", "cache_size", "precision")  # precision: the node's extension
# Request.MAX_QUEUE_CAPACITY and the default queue_capacity, 8.x (a later source has 100_000 and 10_000; from which
# release is UNCONFIRMED, so every claimed version gets 8.x's)
_MAX_QUEUE = 1_000_000
_MAX_THREADS = 32
_BYTE_UNITS = {"b": 1, "k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30,
               "t": 1 << 40, "tb": 1 << 40, "p": 1 << 50, "pb": 1 << 50}  # fmt: skip
_SUFFIX = {1: "b", 1 << 10: "kb", 1 << 20: "mb", 1 << 30: "gb", 1 << 40: "tb", 1 << 50: "pb"}
_BYTE_SIZE = re.compile(r"(-?\d+(?:\.\d+)?)\s*([a-z]*)")


@dataclass(frozen=True)
class StartParams:
    inference_threads: int = 1  # threads_per_allocation
    model_threads: int = 1  # number_of_allocations
    queue_capacity: int = 1024
    timeout: TimeValue = TimeValue(20.0, "20s")
    wait_for: str = AllocationStatus.STARTED
    deployment_id: str | None = None  # the model id when not given
    priority: str = NORMAL
    cache_size: str | None = None  # ByteSizeValue.getStringRep(); the model's size when not given
    adaptive_allocations: dict[str, Any] | None = None  # stored and shown; nothing scales on it yet
    precision: str | None = None  # auto | fp32 | bf16, the node's extension; each node's --precision when not given


def parse_start(model_id: str, params: Params, body: dict[str, Any], since_8_4: bool) -> StartParams:
    """Query string and body both count; where both give a value, the query string wins. `since_8_4`: the claimed
    version limits threads per allocation to powers of 2 up to 32 (elasticsearch#87697)."""
    if "model_id" in body and body["model_id"] != model_id:
        raise status_exception(
            400,
            f"Inconsistent model_id; '{body['model_id']}' specified in the body differs from '{model_id}' "
            "specified as a URL argument",
        )
    known = {alias for aliases in _INT_PARAMS.values() for alias in aliases}
    known |= {"timeout", "wait_for", "model_id", "adaptive_allocations", *_STRING_PARAMS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise EsError(400, "x_content_parse_exception", f"[{_ACTION}] unknown field [{unknown[0]}]")
    values: dict[str, Any] = {}
    names: dict[str, str] = {}
    for name, aliases in _INT_PARAMS.items():
        for alias in aliases:
            value = params.int(alias)
            if value is None and alias in body:
                value = _body_int(body[alias], alias)
            if value is not None and name not in values:
                values[name], names[name] = value, alias
    strings = {name: _string(params, body, name) for name in _STRING_PARAMS}
    timeout = params.str("timeout")
    values["timeout"] = parse_time(timeout if timeout is not None else str(body.get("timeout", "20s")), "timeout")
    wait_for = params.str("wait_for") or body.get("wait_for") or "started"
    params.finish()
    if str(wait_for).lower() not in WAIT_FOR_ORDER:
        raise illegal_argument(
            "No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.AllocationStatus.State."
            + str(wait_for).upper()
        )
    values["wait_for"] = str(wait_for).lower()
    values["deployment_id"] = strings["deployment_id"]
    values["priority"] = _priority(strings["priority"])
    if strings["cache_size"] is not None:
        values["cache_size"] = parse_byte_size(strings["cache_size"], "cache_size")
    if body.get("adaptive_allocations") is not None:
        values["adaptive_allocations"] = _adaptive(body["adaptive_allocations"])
    values["precision"] = _precision(strings["precision"])
    _validate(values, names, since_8_4)
    return StartParams(**values)


def _string(params: Params, body: dict[str, Any], name: str) -> str | None:
    value = params.str(name)
    if value is None and body.get(name) is not None:
        value = str(body[name])
    return value


def _priority(value: str | None) -> str:
    """Priority.fromString: case-insensitive; anything else is the enum's own refusal."""
    if value is None:
        return NORMAL
    if value.lower() not in (NORMAL, LOW):
        raise illegal_argument(
            f"No enum constant org.elasticsearch.xpack.core.ml.inference.assignment.Priority.{value.upper()}"
        )
    return value.lower()


def _precision(value: str | None) -> str | None:
    """Not Elasticsearch's: refused the way its enum parameters are. bf16 is accepted whatever this node's CPU is:
    the deployment may run on other nodes, and where bf16 is not in hardware the worker emulates it and says so."""
    if value is not None and value.lower() not in PRECISIONS:
        raise illegal_argument(f"[precision] must be one of [{', '.join(PRECISIONS)}]; provided [{value}]")
    return None if value is None else value.lower()


def _adaptive(value: Any) -> dict[str, Any]:
    """AdaptiveAllocationsSettings' fields, kept as given (only `enabled` and the two bounds)."""
    if not isinstance(value, dict):
        raise EsError(400, "x_content_parse_exception", f"[{_ACTION}] failed to parse field [adaptive_allocations]")
    fields = ("enabled", "min_number_of_allocations", "max_number_of_allocations")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise EsError(400, "x_content_parse_exception", f"[adaptive_allocations_settings] unknown field [{unknown[0]}]")
    return {name: value[name] for name in fields if name in value}


def parse_byte_size(text: str, setting: str) -> str:
    """ByteSizeValue.parseBytesSizeValue, answered as getStringRep(): `10kb`, `1630b`, `0` (a bare number only for
    0 and -1; fractions become bytes)."""
    match = _BYTE_SIZE.fullmatch(text.strip().lower())
    unit = match.group(2) if match else ""
    if match is None or (unit and unit not in _BYTE_UNITS) or (not unit and match.group(1) not in ("0", "-1")):
        raise EsError(
            400,
            "parse_exception",
            f"failed to parse setting [{setting}] with value [{text}] as a size in bytes: unit is missing or unrecognized",
        )
    number = float(match.group(1))
    if number <= 0:
        return str(int(number))
    scale = _BYTE_UNITS[unit]
    if number.is_integer():
        return f"{int(number)}{_SUFFIX[scale]}"
    return f"{int(number * scale)}b"


def byte_count(rep: str) -> int:
    """The bytes a `parse_byte_size` answer stands for."""
    match = _BYTE_SIZE.fullmatch(rep)
    assert match is not None
    return int(float(match.group(1))) * _BYTE_UNITS[match.group(2) or "b"]


def byte_size_string(size: int) -> str:
    """getStringRep() of ByteSizeValue.ofBytes(size): the cache's default, the model's size."""
    return f"{size}b" if size > 0 else str(size)


def _body_int(value: Any, name: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    cause = EsError(400, "number_format_exception", f'For input string: "{value}"')
    raise EsError(400, "x_content_parse_exception", f"[{_ACTION}] failed to parse field [{name}]", cause)


def _validate(values: dict[str, Any], names: dict[str, str], since_8_4: bool) -> None:
    """Request.validate()'s order: allocations, threads, queue_capacity, timeout, then what `low` priority allows."""
    errors = [
        f"[{names[name]}] must be a positive integer"
        for name in ("model_threads", "inference_threads")
        if name in values and values[name] < 1
    ]
    threads = values.get("inference_threads", 1)
    if since_8_4 and threads >= 1 and not _power_of_two_up_to_32(threads):
        errors.append(f"[threads_per_allocation] must be a power of 2 less than or equal to {_MAX_THREADS}")
    if values.get("queue_capacity", 1) < 1:
        errors.append(f"[{names['queue_capacity']}] must be a positive integer")
    if values.get("queue_capacity", 0) >= _MAX_QUEUE:
        errors.append(f"[queue_capacity] must be less than {_MAX_QUEUE}")
    if values["timeout"].seconds <= 0:
        errors.append("[timeout] must be positive")
    if values["priority"] == LOW:
        if values.get("model_threads", 1) > 1:
            errors.append("[number_of_allocations] must be 1 when [priority] is low")
        if threads > 1:
            errors.append("[threads_per_allocation] must be 1 when [priority] is low")
    if errors:
        raise validation_failed(errors)


def _power_of_two_up_to_32(value: int) -> bool:
    return value <= _MAX_THREADS and value & (value - 1) == 0


def new_deployment(model_id: str, model_bytes: int, start: StartParams) -> dict[str, Any]:
    """The stored deployment: the seed's thread names, the 8.3+ parameters beside them (shown as each version does)."""
    return {
        "model_id": model_id,
        "task_parameters": {
            "model_id": model_id,
            "deployment_id": start.deployment_id or model_id,
            "model_bytes": model_bytes,
            "inference_threads": start.inference_threads,
            "model_threads": start.model_threads,
            "queue_capacity": start.queue_capacity,
            "cache_size": start.cache_size if start.cache_size is not None else byte_size_string(model_bytes),
            "priority": start.priority,
            "adaptive_allocations": start.adaptive_allocations,
            "precision": start.precision,
        },
        "state": AssignmentState.STARTED,
        "start_time": time.time_ns() // 1000,  # microseconds, printed in ISO-8601
    }
