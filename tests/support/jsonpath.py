"""The JSON path subset Elasticsearch's inference services read responses with (`MapPathExtractor`): `$`, then
`.field` and `[*]` steps. Unlike JSONPath, nested lists are kept: `$.a[*].b[*].c` gives a list of lists."""

from __future__ import annotations

import re
from typing import Any

_FIELD = re.compile(r"\.([^.\[]+)(.*)")
_EACH = re.compile(r"\[\*\](.*)")


def extract(document: Any, path: str) -> Any:
    """The value at `path`; a missing field or a step of the wrong kind raises `ValueError`, as the parser fails."""
    path = path.strip()
    if not path.startswith("$"):
        raise ValueError(f"Path [{path}] must start with a dollar sign ($)")
    return _walk(document, path[1:])


def _walk(current: Any, rest: str) -> Any:
    if current is None or not rest:
        return current
    if field := _FIELD.fullmatch(rest):
        if not isinstance(current, dict) or current.get(field.group(1)) is None:
            raise ValueError(f"Unable to find field [{field.group(1)}] in {type(current).__name__}")
        return _walk(current[field.group(1)], field.group(2))
    if each := _EACH.fullmatch(rest):
        if not isinstance(current, list):
            raise ValueError(f"[*] on a {type(current).__name__}")
        return [found for item in current if (found := _walk(item, each.group(1))) is not None]
    raise ValueError(f"Invalid path received [{rest}], unable to extract a field name.")
