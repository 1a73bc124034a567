"""Elasticsearch's ObjectParser rules for request bodies: which JSON types a declared field takes, and its errors.

A body is read field by field in the order it was sent, so the first bad field is the one reported, as in
Elasticsearch. Reasons leave out the `[line:col] ` prefix Elasticsearch puts first: positions are not known here.
"""

from __future__ import annotations

from typing import Any

from sidecar.errors import EsError
from sidecar.models.tokenization.base import parse_failure, unknown_field

# ObjectParser.ValueType: the JSON tokens each kind of declared field accepts
STRING = frozenset({"VALUE_STRING"})
LONG = frozenset({"VALUE_NUMBER", "VALUE_STRING"})
INT = LONG
OBJECT = frozenset({"START_OBJECT"})
STRING_ARRAY = frozenset({"START_ARRAY", "VALUE_STRING"})
DOUBLE_ARRAY = frozenset({"START_ARRAY", "VALUE_NUMBER", "VALUE_STRING"})
VALUE = frozenset({"VALUE_STRING", "VALUE_NUMBER", "VALUE_BOOLEAN"})

_LONG_RANGE = (-(1 << 63), (1 << 63) - 1)
_INT_RANGE = (-(1 << 31), (1 << 31) - 1)


def token(value: Any) -> str:
    """The Jackson token a JSON value starts with."""
    if value is None:
        return "VALUE_NULL"
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, (int, float)):
        return "VALUE_NUMBER"
    if isinstance(value, str):
        return "VALUE_STRING"
    return "START_OBJECT" if isinstance(value, dict) else "START_ARRAY"


def check_fields(owner: str, body: dict[str, Any], declared: dict[str, frozenset[str]]) -> None:
    """A strict parser's first complaint: an unknown field, or a value of a type the field does not take."""
    for name, value in body.items():
        accepted = declared.get(name)
        if accepted is None:
            raise unknown_field(owner, name)
        if token(value) not in accepted:
            raise EsError(
                400, "x_content_parse_exception", f"[{owner}] {name} doesn't support values of type: {token(value)}"
            )


def long_value(owner: str, name: str, value: Any, *, bits: int = 64) -> int:
    """`declareLong`/`declareInt`: a number (a fraction is cut, as Elasticsearch coerces) or a numeric string."""
    low, high = _LONG_RANGE if bits == 64 else _INT_RANGE
    kind = "long" if bits == 64 else "int"
    if isinstance(value, str):
        try:
            number = int(value) if value.lstrip("+-").isdigit() else int(float(value))
        except (ValueError, OverflowError):
            raise _failed(owner, name, EsError(400, "number_format_exception", f'For input string: "{value}"')) from None
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise _failed(owner, name, _out_of_range(value, kind, low, high))
        number = int(value)
    else:
        number = value
    if not low <= number <= high:
        raise _failed(owner, name, _out_of_range(value, kind, low, high))
    return number


def string_array(owner: str, name: str, value: Any) -> list[str]:
    """`declareStringArray`: one string or an array of values, each read as text; nested objects or arrays fail."""
    items = value if isinstance(value, list) else [value]
    texts = []
    for item in items:
        if isinstance(item, (dict, list)):
            cause = EsError(400, "illegal_state_exception", f"Can't get text on a {token(item)}")
            raise _failed(owner, name, cause)
        texts.append(_text(item))
    return texts


def double_array(owner: str, name: str, value: Any) -> list[float]:
    """`declareDoubleArray`: numbers or numeric strings."""
    items = value if isinstance(value, list) else [value]
    numbers = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float, str)):
            cause = EsError(400, "illegal_argument_exception", f"[{name}] doesn't support values of type: {token(item)}")
            raise _failed(owner, name, cause)
        try:
            numbers.append(float(item))
        except ValueError:
            raise _failed(owner, name, EsError(400, "number_format_exception", f'For input string: "{item}"')) from None
    return numbers


def _text(value: Any) -> str:
    """XContentParser.text(): a scalar's JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


def _failed(owner: str, name: str, cause: EsError) -> EsError:
    error = parse_failure(owner, name)
    error.caused_by = cause
    return error


def _out_of_range(value: Any, kind: str, low: int, high: int) -> EsError:
    # Jackson's InputCoercionException, which Elasticsearch's JSON parser lets through (rendering UNCONFIRMED)
    return EsError(400, "input_coercion_exception", f"Numeric value ({value}) out of range of {kind} ({low} - {high})")
