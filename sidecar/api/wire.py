"""Elasticsearch's wire conventions for bodies and responses: media types, pretty, filter_path, errors."""

from __future__ import annotations

import fnmatch
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.params import Params
from sidecar.errors import EsError

PRODUCT_HEADER = (b"x-elastic-product", b"Elasticsearch")
BUILD_HASH = "unknown"  # `GET /`'s build_hash, which deprecation warnings name too
JSON_TYPE = "application/json"
_ACCEPTED_TYPES = ("application/json", "application/vnd.elasticsearch+json")


class EsRequest:
    """One REST call: path parameters, typed query parameters and the JSON body."""

    def __init__(self, request: Request, body: bytes | bytearray) -> None:
        self.http = request
        self.path_params: dict[str, str] = request.path_params
        self.params = Params(request.url.path, request.query_params)
        self._body = body

    @property
    def has_body(self) -> bool:
        return bool(self._body) and not self._body.isspace()  # no copy of a large body

    def json(self) -> Any:
        """The body parsed as JSON; an empty body is `{}`."""
        if not self.has_body:
            return {}
        _check_content_type(self.http.headers.get("content-type"))
        try:
            return orjson.loads(self._body)
        except orjson.JSONDecodeError as exc:
            raise EsError(400, "x_content_parse_exception", f"[{exc.lineno}:{exc.colno}] {exc.msg}") from None

    def object(self, required: bool = False) -> dict[str, Any]:
        """The body as a JSON object, as every ML API expects."""
        if required and not self.has_body:
            raise EsError(400, "parse_exception", "request body is required")
        body = self.json()
        if not isinstance(body, dict):
            raise EsError(400, "x_content_parse_exception", "[1:1] request body must be a JSON object")
        return body


def _check_content_type(content_type: str | None) -> None:
    media = (content_type or JSON_TYPE).split(";")[0].strip().lower()
    if media not in _ACCEPTED_TYPES:
        raise EsError(406, "", f"Content-Type header [{content_type}] is not supported")


def render(data: Any, status: int = 200, *, params: Params | None = None) -> Response:
    """Serialize a response honouring `pretty` and `filter_path` (filters apply to successes only)."""
    if params is not None:
        filters = params.str("filter_path")
        if filters and status < 300:
            data = filter_path(data, [f.strip() for f in filters.split(",") if f.strip()])
        if params.str("pretty") is not None and params.str("pretty") != "false":
            return raw_json(pretty(data), status)
    return raw_json(orjson.dumps(data), status)


def raw_json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON_TYPE)


def deprecation_warning(version: str, message: str) -> str:
    """A `Warning` header value as HeaderWarning formats it: `299 Elasticsearch-<version>-<hash> "<message>"`."""
    quoted = message.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 Elasticsearch-{version}-{BUILD_HASH} "{quoted}"'


def error_response(error: EsError, params: Params | None = None) -> Response:
    if error.type == "":  # Elasticsearch renders a few transport-level errors as a bare string
        return render({"error": error.reason, "status": error.status}, error.status, params=params)
    return render(error.envelope(), error.status, params=params)


def byte_size(size: int) -> str:
    """ByteSizeValue.toString(): 1024-based units, one truncated decimal, `.0` dropped."""
    for unit, scale in (("pb", 1 << 50), ("tb", 1 << 40), ("gb", 1 << 30), ("mb", 1 << 20), ("kb", 1 << 10)):
        if size >= scale:
            return f"{int(size / scale * 10) / 10:.1f}".removesuffix(".0") + unit
    return f"{size}b"


def pretty(data: Any) -> bytes:
    """Elasticsearch's pretty print: 2-space indent, `"key" : value`, trailing newline."""
    text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    return (_spaced_colons(text) + "\n").encode()


def _spaced_colons(text: str) -> str:
    out: list[str] = []
    for line in text.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith('"'):
            end = _string_end(stripped)
            if stripped[end : end + 2] == ": ":
                line = line[: len(line) - len(stripped)] + stripped[:end] + " : " + stripped[end + 2 :]
        out.append(line)
    return "\n".join(out)


def _string_end(text: str) -> int:
    i = 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i + 1
        i += 1
    return len(text)


def filter_path(data: Any, filters: list[str]) -> Any:
    """Keep the leaves named by dot paths (`*` within a name, `**` any depth); `-path` excludes."""
    includes = [f.split(".") for f in filters if not f.startswith("-")]
    excludes = [f[1:].split(".") for f in filters if f.startswith("-")]
    if excludes:
        data = _exclude(data, excludes)
    if includes:
        data = _include(data, includes)
    return {} if data is None else data


def _matches(pattern: str, key: str) -> bool:
    return pattern == key or fnmatch.fnmatchcase(key, pattern)


def _include(node: Any, paths: list[list[str]]) -> Any:
    if isinstance(node, list):
        kept = [k for k in (_include(item, paths) for item in node) if k is not None]
        return kept or None
    if not isinstance(node, dict):
        return None
    out: dict[str, Any] = {}
    for key, value in node.items():
        rest: list[list[str]] = []
        whole = False
        for path in paths:
            head = path[0]
            if head == "**":
                rest.append(path)  # `**` may swallow this key
                if len(path) > 1 and _matches(path[1], key):
                    if len(path) == 2:
                        whole = True
                    else:
                        rest.append(path[2:])
            elif _matches(head, key):
                if len(path) == 1:
                    whole = True
                else:
                    rest.append(path[1:])
        if whole:
            out[key] = value
        elif rest:
            kept = _include(value, rest)
            if kept is not None:
                out[key] = kept
    return out or None


def _exclude(node: Any, paths: list[list[str]]) -> Any:
    if isinstance(node, list):
        return [_exclude(item, paths) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        matching = [p for p in paths if _matches(p[0], key)]
        if any(len(p) == 1 for p in matching):
            continue
        out[key] = _exclude(value, [p[1:] for p in matching]) if matching else value
    return out
