"""Definition parts: Elasticsearch's upload validation, and the check that a stored definition is whole."""

from __future__ import annotations

import base64
import binascii
import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sidecar.errors import EsError, illegal_argument, not_found, status_exception, validation_failed
from sidecar.models import fields
from sidecar.store.base import PartInfo

MAX_PARTS = 10_000
_BAD_PARTS = "Unable to deploy model, please delete and recreate the model definition"
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}  # a full disk, a quota, a file size limit


# PutTrainedModelDefinitionPartAction.Request's parser
_PARSER = "put_trained_model_part_action"
_FIELDS = {"definition": fields.STRING, "total_definition_length": fields.LONG, "total_parts": fields.INT}


def parse_part(part_text: str, body: dict[str, Any]) -> tuple[PartInfo, bytes]:
    """Validate `PUT …/definition/<part>` and decode its base64 chunk."""
    try:
        part = int(part_text)
    except ValueError:
        raise EsError(400, "number_format_exception", f'For input string: "{part_text}"') from None
    fields.check_fields(_PARSER, body, _FIELDS)
    data = decode_base64(_PARSER, "definition", body["definition"]) if "definition" in body else None
    total_length = _number(body, "total_definition_length", 64)
    total_parts = _number(body, "total_parts", 32)
    errors = []
    if part < 0:
        errors.append("[part] must be greater or equal to 0")
    if total_parts <= 0:
        errors.append("[total_parts] must be greater than 0")
    elif total_parts > MAX_PARTS:
        errors.append(f"[total_parts] must be less than or equal to {MAX_PARTS}")
    if total_length <= 0:
        errors.append("[total_definition_length] must be greater than 0")
    if part >= total_parts:
        errors.append("[part] must be less than total_parts")
    if errors or data is None:
        raise validation_failed(errors or ["[definition] must not be null."])
    return PartInfo(part, total_parts, total_length, len(data)), data


def _number(body: dict[str, Any], name: str, bits: int) -> int:
    """An absent number is Java's default, 0, which validation then refuses."""
    return fields.long_value(_PARSER, name, body[name], bits=bits) if name in body else 0


_BASE64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def decode_base64(owner: str, field_name: str, text: str) -> bytes:
    """A base64 field as java.util.Base64 reads it; its refusal wrapped as the owner's parser wraps it."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        cause = illegal_argument(_java_base64_error(text))
        raise EsError(400, "x_content_parse_exception", f"[{owner}] failed to parse field [{field_name}]", cause) from None


def _java_base64_error(text: str) -> str:
    """The message java.util.Base64's decoder gives for the same input."""
    for char in text.encode("utf-8", "replace"):
        if char not in _BASE64_ALPHABET:
            return f"Illegal base64 character {char:x}"
    return "Input byte array has wrong 4-byte ending unit"


def check_whole(model_id: str, parts: list[PartInfo]) -> int:
    """Raise Elasticsearch's error when a definition is missing, truncated or inconsistent; return its length.

    Elasticsearch checks that every part gives one total length and that the lengths add up to it; a gap, a stray
    part or a second `total_parts` it leaves to the native process, which fails to load the bytes. Here those are
    refused up front with the same messages: whole means parts 0..N-1 under one `total_parts`.
    """
    if not parts:
        raise not_found(f"Could not find trained model definition [{model_id}]")
    first = parts[0]
    for info in parts:
        for name in ("total_definition_length", "total_parts"):
            if getattr(info, name) != getattr(first, name):
                raise status_exception(
                    400,
                    f"[{model_id}] [{name}] must be the same in all model definition parts. The value "
                    f"[{getattr(info, name)}] in model definition part [{info.part}] does not match the value "
                    f"[{getattr(first, name)}] in part [{first.part}]. {_BAD_PARTS}",
                )
    numbered = [p.part for p in parts] == list(range(first.total_parts))
    if not numbered or sum(p.length for p in parts) != first.total_definition_length:
        raise status_exception(
            400, f"Model definition truncated. Unable to deserialize trained model definition [{model_id}]"
        )
    return first.total_definition_length


def part_exists(model_id: str, part: int) -> EsError:
    """MessageFormat groups the part number's digits: part 1000 prints as `1,000`."""
    return EsError(
        400,
        "resource_already_exists_exception",
        f"Trained machine learning model chunked doc [{model_id}][{part:,}] already exists",
    )


def write_definition(chunks: Iterable[bytes], path: Path) -> Path:
    """Assemble a definition on disk atomically: a reader never sees a half-written file, and a failed write
    leaves nothing behind. No room on disk is Elasticsearch's 429, the status of its flood-stage block."""
    partial = path.with_suffix(f".partial-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(partial, path)
    except BaseException as exc:
        partial.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_ROOM:
            reason = f"no room on this node's disk to assemble the model definition [{path.stem}]: {exc.strerror}"
            raise status_exception(429, reason) from None
        raise
    return path
