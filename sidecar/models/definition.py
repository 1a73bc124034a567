"""Definition parts: Elasticsearch's upload validation, and the check that a stored definition is whole."""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sidecar.errors import EsError, illegal_argument, not_found, status_exception, validation_failed
from sidecar.store.base import PartInfo

MAX_PARTS = 10_000
_BAD_PARTS = "Unable to deploy model, please delete and recreate the model definition"


def parse_part(part_text: str, body: dict[str, Any]) -> tuple[PartInfo, bytes]:
    """Validate `PUT …/definition/<part>` and decode its base64 chunk."""
    try:
        part = int(part_text)
    except ValueError:
        raise EsError(400, "number_format_exception", f'For input string: "{part_text}"') from None
    total_parts = _int_field(body, "total_parts")
    total_length = _int_field(body, "total_definition_length")
    errors = []
    if part < 0:
        errors.append("[part] must be greater or equal to 0")
    if total_parts is None or total_parts <= 0:
        errors.append("[total_parts] must be greater than 0")
    elif total_parts > MAX_PARTS:
        errors.append(f"[total_parts] must be less than or equal to {MAX_PARTS}")
    if total_length is None or total_length <= 0:
        errors.append("[total_definition_length] must be greater than 0")
    if total_parts is not None and part >= total_parts:
        errors.append("[part] must be less than total_parts")
    if errors:
        raise validation_failed(errors)
    data = _decode(body.get("definition"))
    return PartInfo(part, total_parts, total_length, len(data)), data  # type: ignore[arg-type]


def _int_field(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise EsError(400, "x_content_parse_exception", f"[{name}] failed to parse field [{name}]")
    try:
        return int(value)
    except ValueError:
        cause = EsError(400, "number_format_exception", f'For input string: "{value}"')
        raise EsError(400, "x_content_parse_exception", f"[{name}] failed to parse field [{name}]", cause) from None


_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _decode(definition: Any) -> bytes:
    if not isinstance(definition, str) or not definition:
        raise validation_failed(["[definition] must not be null."])
    try:
        return base64.b64decode(definition, validate=True)
    except (binascii.Error, ValueError):
        cause = illegal_argument(_java_base64_error(definition))
        raise EsError(
            400,
            "x_content_parse_exception",
            "[put_trained_model_definition_part_action] failed to parse field [definition]",
            cause,
        ) from None


def _java_base64_error(text: str) -> str:
    """The message java.util.Base64's decoder gives for the same input."""
    for char in text.encode("utf-8", "replace"):
        if char not in _BASE64_ALPHABET:
            return f"Illegal base64 character {char:x}"
    return "Input byte array has wrong 4-byte ending unit"


def check_whole(model_id: str, parts: list[PartInfo]) -> int:
    """Raise Elasticsearch's error when a definition is missing, truncated or inconsistent; return its length."""
    if not parts:
        raise not_found(f"Could not find trained model definition [{model_id}]")
    first = parts[0].total_definition_length
    for info in parts:
        if info.total_definition_length != first:
            raise status_exception(
                400,
                f"[{model_id}] [total_definition_length] must be the same in all model definition parts. The value "
                f"[{info.total_definition_length}] in model definition part [{info.part}] does not match the value "
                f"[{first}] in part [0]. {_BAD_PARTS}",
            )
    last = parts[-1]
    if sum(p.length for p in parts) != first or last.part != last.total_parts - 1:
        raise status_exception(
            400, f"Model definition truncated. Unable to deserialize trained model definition [{model_id}]"
        )
    return first


def part_exists(model_id: str, part: int) -> EsError:
    """MessageFormat groups the part number's digits: part 1000 prints as `1,000`."""
    return EsError(
        400,
        "resource_already_exists_exception",
        f"Trained machine learning model chunked doc [{model_id}][{part:,}] already exists",
    )


def write_definition(chunks: Iterable[bytes], path: Path) -> Path:
    """Assemble a definition on disk atomically: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}")
    with open(partial, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    os.replace(partial, path)
    return path
