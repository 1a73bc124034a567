"""The indices and documents of the Elasticsearch test double (`EsClusterDouble` serves them): the documented index
and document APIs the Elasticsearch store and the ingest tests call, kept in memory.

It keeps the semantics the callers rely on, and refuses what a real cluster refuses in those calls:
- a GET is realtime; a search or a delete-by-query sees only what the last refresh made visible: an explicit
  `_refresh`, or, for an index whose settings name a `refresh_interval`, the scheduled refresh (IndexShard's
  scheduledRefresh; without the setting a shard goes search-idle, so the double does not refresh it on its own and a
  caller that forgets to refresh fails here every time, not once in a while there);
- one shard per index, primary term 1: `_create` (or `op_type=create`) of an existing id and a stale
  `if_seq_no`/`if_primary_term` on an index or a delete answer 409 `version_conflict_engine_exception` (a missing
  document too: InternalEngine plans such a delete as a version conflict, not a 404);
- explicit mappings are checked and enforced (`dynamic: strict`, field types, base64 for `binary`); unknown index
  settings, unknown URL parameters, unknown search keys or queries, sorts on unmapped fields and result windows over
  10,000 answer 400 with Elasticsearch's error types;
- `action.auto_create_index` is true, as by default (AutoCreateIndex): a write to a missing index creates it, with
  the settings and mappings of the highest-priority index template whose pattern matches the name
  (MetadataIndexTemplateService.findV2Template), else with dynamic mappings (DynamicFieldsBuilder: strings as
  `text` with a `keyword` sub-field, whole numbers `long`, fractions `float`, booleans, objects), not hidden.
Reasons follow Elasticsearch's wording, less the `[line:col]` positions of parse errors. What no caller uses
(wildcards, other queries) is refused as not implemented rather than imitated loosely.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidecar.errors import EsError

Json = dict[str, Any]
_MAX_RESULT_WINDOW = 10_000
_MAX_ID_BYTES = 512
_SETTINGS = {
    "index.hidden",
    "index.number_of_shards",
    "index.number_of_replicas",
    "index.auto_expand_replicas",
    "index.refresh_interval",
    "index.default_pipeline",
}
_LEAF = {"type", "index", "doc_values"}
_PARAMS = {
    "keyword": _LEAF,
    "integer": _LEAF,
    "long": _LEAF,
    "double": _LEAF,
    "boolean": _LEAF,
    "binary": {"type", "doc_values"},
    "object": {"type", "enabled", "dynamic", "properties"},
    "text": {"type", "index", "fields"},
    "float": _LEAF,
    "dense_vector": {"type", "dims", "similarity", "index", "element_type"},
    "sparse_vector": {"type"},
    "semantic_text": {"type", "inference_id", "search_inference_id"},  # SemanticTextFieldMapper
}
# DynamicFieldsBuilder's choices for a value seen in an unmapped field of a dynamic index
_TEXT = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}}
_RANGES = {"integer": 2**31, "long": 2**63}
_SEARCHABLE = {"keyword", "integer", "long", "double", "boolean"}
_SEARCH_KEYS = {"query", "sort", "size", "_source"}
_SHARDS = {"total": 2, "successful": 1, "failed": 0}  # a primary and its (unassigned) replica


def _not_implemented(what: str) -> EsError:
    return EsError(400, "illegal_argument_exception", f"{what} is not implemented by this test double")


def _index_not_found(name: str) -> EsError:
    metadata = {"resource.type": "index_or_alias", "resource.id": name, "index_uuid": "_na_", "index": name}
    return EsError(404, "index_not_found_exception", f"no such index [{name}]", metadata=metadata)


def _shard_failure(type_: str, reason: str) -> EsError:
    cause = EsError(400, type_, reason)
    return EsError(400, "search_phase_execution_exception", "all shards failed", cause, {"phase": "query"})


def _unknown_key(key: str, value: Any) -> EsError:
    token = {dict: "START_OBJECT", list: "START_ARRAY", bool: "VALUE_BOOLEAN", str: "VALUE_STRING"}
    return EsError(400, "parsing_exception", f"Unknown key for a {token.get(type(value), 'VALUE_NUMBER')} in [{key}].")


def _invalid(reason: str) -> EsError:
    return EsError(400, "action_request_validation_exception", f"Validation Failed: 1: {reason};")


# mappings and settings ------------------------------------------------------------------------------
def _checked_mappings(mappings: Json) -> Json:
    """Refuse what Elasticsearch refuses; answer the mapping as GET renders it."""
    unsupported = [f"{k} : {v}" for k, v in mappings.items() if k not in ("dynamic", "properties", "_meta")]
    if unsupported:
        reason = f"Root mapping definition has unsupported parameters:  [{', '.join(unsupported)}]"
        raise EsError(400, "mapper_parsing_exception", reason)
    meta = {"_meta": mappings["_meta"]} if "_meta" in mappings else {}
    properties = _checked_properties(mappings.get("properties", {}))
    return {"dynamic": _dynamic(mappings.get("dynamic", True)), **meta, "properties": properties}


def _dynamic_field(value: Any) -> Json | None:
    """The mapping a dynamic index gives a new field for `value` (None: nothing to map yet, as for null)."""
    if isinstance(value, list):
        return next((m for m in map(_dynamic_field, value) if m is not None), None)
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "long"}
    if isinstance(value, float):
        return {"type": "float"}
    if isinstance(value, str):
        return dict(_TEXT)
    if isinstance(value, dict):
        return {"properties": _dynamic_properties({}, value)}
    return None


def _dynamic_properties(properties: Json, source: Json) -> Json:
    """`properties` grown by the fields of `source` it does not map yet (DocumentParser with dynamic: true)."""
    grown = dict(properties)
    for key, value in source.items():
        if key not in grown:
            if (mapped := _dynamic_field(value)) is not None:
                grown[key] = mapped
        elif "properties" in grown[key] and isinstance(value, dict) and grown[key].get("dynamic", "true") == "true":
            grown[key] = {**grown[key], "properties": _dynamic_properties(grown[key]["properties"], value)}
    return dict(sorted(grown.items()))


def _dynamic(value: Any) -> str:
    dynamic = str(value).lower()
    if dynamic not in ("strict", "false", "true"):
        raise _not_implemented(f"dynamic mapping [{dynamic}]")
    return dynamic


def _checked_properties(properties: Json) -> Json:
    return {name: _checked_field(name, spec) for name, spec in sorted(properties.items())}


def _checked_field(name: str, spec: Json) -> Json:
    kind = spec.get("type", "object")
    if kind not in _PARAMS:
        raise EsError(400, "mapper_parsing_exception", f"No handler for type [{kind}] declared on field [{name}]")
    if extra := sorted(spec.keys() - _PARAMS[kind]):
        reason = f"unknown parameter [{extra[0]}] on mapper [{name}] of type [{kind}]"
        raise EsError(400, "mapper_parsing_exception", reason)
    if "properties" not in spec:
        return {**spec, "type": kind}
    dynamic = {"dynamic": _dynamic(spec["dynamic"])} if "dynamic" in spec else {}
    rest = {k: v for k, v in spec.items() if k not in ("type", "dynamic", "properties")}
    return {**rest, **dynamic, "properties": _checked_properties(spec["properties"])}


def flat(settings: Json, prefix: str = "") -> Json:
    out: Json = {}
    for key, value in settings.items():
        out |= flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}
    return out


def _checked_settings(settings: Json) -> dict[str, str]:
    """`index.`-prefixed keys and string values, as GET renders them; unknown keys refused."""
    flattened = {k if k.startswith("index.") else f"index.{k}": v for k, v in flat(settings).items()}
    if unknown := sorted(flattened.keys() - _SETTINGS):
        reason = (
            f"unknown setting [{unknown[0]}] please check that any required plugins are installed, or check the "
            "breaking changes documentation for removed settings"
        )
        raise EsError(400, "illegal_argument_exception", reason)
    rendered = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in flattened.items()}
    return {"index.number_of_shards": "1", "index.number_of_replicas": "1"} | rendered


def _seconds(value: str) -> float:
    """A time value setting (`1s`, `500ms`, `-1`) in seconds; negative: never."""
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if value.endswith(suffix) and value[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(value[: -len(suffix)]) * scale
    return -1.0


def _check_index_name(name: str) -> None:
    if name != name.lower() or name[:1] in ("_", "-", "+") or any(c in name for c in ' "*\\<|,>/?:#'):
        rules = "must be lowercase and not start with '_', '-', '+' nor contain [ , \", *, \\, <, |, ,, >, /, ?, :, #]"
        raise EsError(400, "invalid_index_name_exception", f"Invalid index name [{name}], {rules}")


# documents ----------------------------------------------------------------------------------------
def _check_source(properties: Json, dynamic: str, source: Json, doc_id: str, path: str = "") -> None:
    """Every field mapped (under `strict`) and every value of its field's type."""
    for key, value in source.items():
        spec = properties.get(key)
        if spec is None and dynamic == "strict":
            reason = f"mapping set to strict, dynamic introduction of [{key}] within [{path or '_doc'}] is not allowed"
            raise EsError(400, "strict_dynamic_mapping_exception", reason)
        for item in value if isinstance(value, list) else [value]:
            if spec is not None and item is not None:
                _check_value(spec, item, f"{path}.{key}" if path else key, doc_id, dynamic)


def _check_value(spec: Json, value: Any, name: str, doc_id: str, dynamic: str) -> None:
    kind = spec.get("type", "object")
    if kind == "object" and not isinstance(value, dict):
        reason = f"object mapping for [{name}] tried to parse field [{name}] as object, but found a concrete value"
        raise EsError(400, "document_parsing_exception", reason)
    if kind == "object" and spec.get("enabled", True):
        _check_source(spec.get("properties", {}), spec.get("dynamic", dynamic), value, doc_id, name)
    if kind != "object" and not _fits(kind, value):
        reason = f"failed to parse field [{name}] of type [{kind}] in document with id '{doc_id}'"
        raise EsError(400, "document_parsing_exception", f"{reason}. Preview of field's value: '{value}'")


def _fits(kind: str, value: Any) -> bool:
    if kind == "semantic_text":
        raise _not_implemented("indexing into a semantic_text field (ShardBulkInferenceActionFilter)")
    if kind in ("keyword", "text"):
        return isinstance(value, (str, int, float, bool))
    if kind == "sparse_vector":
        return isinstance(value, dict) and all(_number(v) is not None for v in value.values())
    if kind == "boolean":
        return value in (True, False, "true", "false")
    if kind == "binary":
        return isinstance(value, str) and _is_base64(value)
    number = _number(value)
    return number is not None and (kind not in _RANGES or -_RANGES[kind] <= number < _RANGES[kind])


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except binascii.Error:
        return False
    return True


# search -------------------------------------------------------------------------------------------
def _leaf(mappings: Json, path: str) -> Json | None:
    """The mapping of an indexed field; None when unmapped, not indexed, or inside an object that is not."""
    spec: Json | None = mappings
    for name in path.split("."):
        if spec is None or not spec.get("enabled", True):
            return None
        spec = spec.get("properties", {}).get(name)
    return spec if spec is not None and spec.get("index", True) else None


def _normalized(kind: str, value: Any) -> Any:
    """A value as the field's type indexes it: keywords as strings, integers truncated."""
    if kind == "keyword":
        return str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "boolean":
        return value in (True, "true")
    number = _number(value)
    return number if kind == "double" or number is None else int(number)


def _values(source: Json, path: str) -> list[Any]:
    value: Any = source
    for name in path.split("."):
        value = value.get(name) if isinstance(value, dict) else None
    return [v for v in (value if isinstance(value, list) else [value]) if v is not None]


def _matcher(query: Any, mappings: Json) -> Callable[[Json], bool]:
    """The store's queries, `match_all` and `term`; any other refused."""
    if not isinstance(query, dict) or len(query) != 1:
        raise EsError(400, "parsing_exception", "query malformed, must start with start_object")
    [(kind, spec)] = query.items()
    if kind == "match_all":
        return lambda source: True
    if kind != "term":
        raise EsError(400, "parsing_exception", f"unknown query [{kind}]")
    if not isinstance(spec, dict) or len(spec) != 1:
        raise EsError(400, "parsing_exception", "[term] query doesn't support multiple fields")
    [(path, value)] = spec.items()
    leaf = _leaf(mappings, path)
    if leaf is None:
        return lambda source: False  # Elasticsearch matches nothing on an unmapped field
    if leaf["type"] not in _SEARCHABLE:
        raise _shard_failure("query_shard_exception", f"Field [{path}] of type [{leaf['type']}] is not searchable")
    wanted = _normalized(leaf["type"], value["value"] if isinstance(value, dict) else value)
    return lambda source: any(_normalized(leaf["type"], v) == wanted for v in _values(source, path))


@dataclass(frozen=True)
class _SortKey:
    path: str
    kind: str
    descending: bool

    def value(self, doc: _Doc) -> Any:
        """The document's least value ascending, greatest descending (the default sort modes); None if missing."""
        values = [_normalized(self.kind, v) for v in _values(doc.source, self.path)]
        return (max if self.descending else min)(values, default=None)


def _sort_keys(sort: Any, mappings: Json) -> list[_SortKey]:
    """Each sort field mapped, with doc values."""
    keys = []
    for item in sort if isinstance(sort, list) else [sort]:
        path, order = (item, "asc") if isinstance(item, str) else next(iter(item.items()))
        order = order.get("order", "asc") if isinstance(order, dict) else order
        if path.startswith("_"):
            raise _not_implemented(f"sorting on [{path}]")
        leaf = _leaf(mappings, path)
        if leaf is None:
            raise _shard_failure("query_shard_exception", f"No mapping found for [{path}] in order to sort on")
        if leaf["type"] not in _SEARCHABLE or not leaf.get("doc_values", True):
            raise _shard_failure("illegal_argument_exception", f"Can't load fielddata on [{path}]: no doc values")
        keys.append(_SortKey(path, leaf["type"], order == "desc"))
    return keys


def _filtered(source: Json, wanted: Any) -> Json | None:
    """`_source`: true, false, field names, or `{"includes": [...]}`."""
    if isinstance(wanted, bool):
        return source if wanted else None
    if isinstance(wanted, dict) and wanted.keys() - {"includes"}:
        raise _not_implemented("`_source` filtering other than by `includes`")
    names = wanted.get("includes", []) if isinstance(wanted, dict) else wanted
    names = [names] if isinstance(names, str) else names
    if any("*" in name or "." in name for name in names):
        raise _not_implemented("`_source` filtering by pattern or path")
    return {k: v for k, v in source.items() if k in names} if names else source


@dataclass(frozen=True)
class _Doc:
    seq_no: int
    version: int
    source: Json


@dataclass
class _Hits:
    """A search's sorted matches, rendered as Elasticsearch renders hits."""

    index: str
    matches: list[tuple[str, _Doc]]
    keys: list[_SortKey]
    includes: Any

    def sorted(self) -> _Hits:
        """Stable passes from the last key to the first; a document missing a key goes last (`missing: _last`)."""
        for key in reversed(self.keys):
            present = [m for m in self.matches if key.value(m[1]) is not None]
            present.sort(key=lambda m: key.value(m[1]), reverse=key.descending)
            self.matches = present + [m for m in self.matches if key.value(m[1]) is None]
        return self

    def render(self, size: int) -> Json:
        total = {"value": min(len(self.matches), _MAX_RESULT_WINDOW), "relation": "eq"}
        if len(self.matches) > _MAX_RESULT_WINDOW:
            total["relation"] = "gte"
        page = [self.hit(doc_id, doc) for doc_id, doc in self.matches[:size]]
        max_score = None if self.keys or not page else 1.0
        hits = {"total": total, "max_score": max_score, "hits": page}
        shards = {"total": 1, "successful": 1, "skipped": 0, "failed": 0}
        return {"took": 0, "timed_out": False, "_shards": shards, "hits": hits}

    def hit(self, doc_id: str, doc: _Doc) -> Json:
        out: Json = {"_index": self.index, "_id": doc_id, "_score": None if self.keys else 1.0}
        source = _filtered(doc.source, self.includes)
        if source is not None:
            out["_source"] = source
        if self.keys:
            out["sort"] = [key.value(doc) for key in self.keys]
        return out


# one index ----------------------------------------------------------------------------------------
@dataclass
class _Index:
    """One shard: live documents for GETs and writes, and the refreshed copy searches see."""

    name: str
    settings: dict[str, str]
    mappings: Json
    uuid: str = field(default_factory=lambda: uuid.uuid4().hex[:22])
    docs: dict[str, _Doc] = field(default_factory=dict)
    visible: dict[str, _Doc] = field(default_factory=dict)
    refreshed_at: float = field(default_factory=time.monotonic)
    seq_no: int = -1

    def describe(self) -> Json:
        settings = self.settings | {"index.provided_name": self.name, "index.uuid": self.uuid}
        return {
            "aliases": {},
            "mappings": self.mappings,
            "settings": {"index": {k.removeprefix("index."): v for k, v in settings.items()}},
        }

    def put(self, doc_id: str, source: Json) -> _Doc:
        """Like Lucene, an updated document moves to the end of the index order."""
        if self.mappings["dynamic"] == "true":
            self.mappings["properties"] = _dynamic_properties(self.mappings["properties"], source)
        _check_source(self.mappings["properties"], self.mappings["dynamic"], source, doc_id)
        previous = self.docs.pop(doc_id, None)
        self.seq_no += 1
        self.docs[doc_id] = _Doc(self.seq_no, previous.version + 1 if previous else 1, source)
        return self.docs[doc_id]

    def remove(self, doc_id: str) -> _Doc | None:
        """A delete takes a sequence number even when there was nothing to delete."""
        self.seq_no += 1
        return self.docs.pop(doc_id, None)

    def conflict(self, doc_id: str, explanation: str) -> EsError:
        metadata = {"index_uuid": self.uuid, "shard": "0", "index": self.name}
        reason = f"[{doc_id}]: version conflict, {explanation}"
        return EsError(409, "version_conflict_engine_exception", reason, metadata=metadata)

    def check_write(self, doc_id: str, create: bool, expected: tuple[int, int] | None) -> None:
        """`create` refuses an existing id; `expected` (seq_no, primary term) must name the current version."""
        current = self.docs.get(doc_id)
        if create and current is not None:
            raise self.conflict(doc_id, f"document already exists (current version [{current.version}])")
        if expected is None or (current is not None and (current.seq_no, 1) == expected):
            return
        required = f"required seqNo [{expected[0]}], primary term [{expected[1]}]."
        if current is None:
            raise self.conflict(doc_id, f"{required} but no document was found")
        raise self.conflict(doc_id, f"{required} current document has seqNo [{current.seq_no}] and primary term [1]")

    def written(self, doc_id: str, doc: _Doc | None, result: str) -> Json:
        return {
            "_index": self.name,
            "_id": doc_id,
            "_version": doc.version if doc else 1,
            "result": result,
            "_shards": _SHARDS,
            "_seq_no": self.seq_no,
            "_primary_term": 1,
        }

    def search(self, body: Json) -> Json:
        if unknown := sorted(body.keys() - _SEARCH_KEYS):
            raise _unknown_key(unknown[0], body[unknown[0]])
        size = int(body.get("size", 10))
        if size > _MAX_RESULT_WINDOW:
            reason = (
                f"Result window is too large, from + size must be less than or equal to: [{_MAX_RESULT_WINDOW}] "
                f"but was [{size}]. See the scroll api for a more efficient way to request large data sets. This "
                "limit can be set by changing the [index.max_result_window] index level setting."
            )
            raise _shard_failure("illegal_argument_exception", reason)
        matches = self.matching(body.get("query", {"match_all": {}}))
        keys = _sort_keys(body["sort"], self.mappings) if "sort" in body else []
        return _Hits(self.name, matches, keys, body.get("_source", True)).sorted().render(size)

    def matching(self, query: Any) -> list[tuple[str, _Doc]]:
        matches = _matcher(query, self.mappings)
        self.scheduled_refresh()
        return [(doc_id, doc) for doc_id, doc in self.visible.items() if matches(doc.source)]

    def scheduled_refresh(self) -> None:
        """What the refresh scheduled every `refresh_interval` has made visible by now."""
        interval = _seconds(self.settings.get("index.refresh_interval", "-1"))
        if interval > 0 and time.monotonic() - self.refreshed_at >= interval:
            self.refresh()

    def refresh(self) -> None:
        self.visible, self.refreshed_at = dict(self.docs), time.monotonic()

    def delete_matching(self, query: Any, proceed: bool) -> tuple[int, Json]:
        """Deletes what the refreshed view matches, each only if unchanged since; else a version conflict."""
        deleted, failures = 0, []
        for doc_id, doc in self.matching(query):
            current = self.docs.get(doc_id)
            if current is not None and current.seq_no == doc.seq_no:
                self.remove(doc_id)
                deleted += 1
                continue
            cause = self.conflict(doc_id, "the document changed since the search").body()
            failures.append({"index": self.name, "id": doc_id, "cause": cause, "status": 409})
            if not proceed:
                break
        report = {
            "took": 0,
            "timed_out": False,
            "total": deleted + len(failures),
            "deleted": deleted,
            "batches": 1,
            "version_conflicts": len(failures),
            "noops": 0,
            "retries": {"bulk": 0, "search": 0},
            "throttled_millis": 0,
            "requests_per_second": -1.0,
            "throttled_until_millis": 0,
        }
        if proceed or not failures:
            return 200, {**report, "failures": []}
        return 409, {**report, "failures": failures}


# the cluster --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Call:
    """One request: its path parts, URL parameters and parsed body."""

    index: str
    id: str
    params: Mapping[str, str]
    body: Any

    def flag(self, name: str) -> bool:
        value = self.params.get(name, "false")
        if value not in ("", "true", "false"):
            reason = f"Failed to parse value [{value}] as only [true] or [false] are allowed."
            raise EsError(400, "illegal_argument_exception", reason)
        return value != "false"

    def expected_version(self) -> tuple[int, int] | None:
        """`if_seq_no` and `if_primary_term`, validated as Elasticsearch validates them."""
        seq_no, term = self.params.get("if_seq_no"), self.params.get("if_primary_term")
        if seq_no is None and term is not None:
            raise _invalid(f"ifSeqNo is unassigned, but primary term is [{term}]")
        if seq_no is not None and term is None:
            raise _invalid("ifSeqNo is set, but primary term is [0]")
        if seq_no is not None and self.params.get("op_type") == "create":
            raise _invalid("create operations do not support compare and set. use index instead")
        return None if seq_no is None or term is None else (int(seq_no), int(term))


class Cluster:
    """Every index by name; each method is one REST API, answering (status, body)."""

    def __init__(self) -> None:
        self.uuid = uuid.uuid4().hex[:22]
        self.indices: dict[str, _Index] = {}
        self.templates: dict[str, Json] = {}

    def index(self, name: str) -> _Index:
        if name not in self.indices:
            raise _index_not_found(name)
        return self.indices[name]

    def concrete(self, names: str) -> list[str]:
        listed = names.split(",")
        if any("*" in name or name == "_all" for name in listed):
            raise _not_implemented("wildcard index expressions")
        return listed

    def create_index(self, call: Call) -> tuple[int, Json]:
        _check_index_name(call.index)
        if call.index in self.indices:
            existing = self.indices[call.index]
            reason = f"index [{call.index}/{existing.uuid}] already exists"
            metadata = {"index_uuid": existing.uuid, "index": call.index}
            raise EsError(400, "resource_already_exists_exception", reason, metadata=metadata)
        body = call.body or {}
        if unknown := sorted(body.keys() - {"settings", "mappings"}):
            raise _unknown_key(unknown[0], body[unknown[0]])
        self.make_index(call.index, body.get("settings", {}), body.get("mappings", {}))
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": call.index}

    def make_index(self, name: str, settings: Json, mappings: Json) -> _Index:
        """A new index: the matching template's settings and mappings, overridden by the request's
        (MetadataCreateIndexService)."""
        template = self.template_for(name)
        settings = {**flat(template.get("settings", {})), **flat(settings)}
        base = template.get("mappings", {})
        mappings = {**base, **mappings, "properties": {**base.get("properties", {}), **mappings.get("properties", {})}}
        self.indices[name] = _Index(name, _checked_settings(settings), _checked_mappings(mappings))
        return self.indices[name]

    def template_for(self, name: str) -> Json:
        """The highest-priority composable template whose patterns match `name` (findV2Template); hidden-index
        settings are applied only by templates that do not match every name."""
        matching = [
            (t.get("priority", 0), t["template"] if "template" in t else {})
            for t in self.templates.values()
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in t["index_patterns"])
        ]
        return max(matching, key=lambda pair: pair[0])[1] if matching else {}

    def put_template(self, call: Call) -> tuple[int, Json]:
        body = call.body or {}
        if unknown := sorted(body.keys() - {"index_patterns", "priority", "template", "_meta"}):
            raise _unknown_key(unknown[0], body[unknown[0]])
        patterns = body.get("index_patterns")
        patterns = [patterns] if isinstance(patterns, str) else patterns
        if not patterns:
            raise _invalid("index patterns are missing")
        template = body.get("template", {})
        _checked_settings(template.get("settings", {}))
        _checked_mappings(template.get("mappings", {}))
        self.templates[call.index] = {**body, "index_patterns": patterns}
        return 200, {"acknowledged": True}

    def get_template(self, call: Call) -> tuple[int, Json]:
        if call.index not in self.templates:
            raise EsError(404, "resource_not_found_exception", f"index template matching [{call.index}] not found")
        return 200, {"index_templates": [{"name": call.index, "index_template": self.templates[call.index]}]}

    def index_exists(self, call: Call) -> tuple[int, Json]:
        return (200 if all(name in self.indices for name in self.concrete(call.index)) else 404), {}

    def get_indices(self, call: Call) -> tuple[int, Json]:
        return 200, {name: self.index(name).describe() for name in self.concrete(call.index)}

    def delete_indices(self, call: Call) -> tuple[int, Json]:
        names = self.concrete(call.index)
        missing = [name for name in names if name not in self.indices]
        if missing and not call.flag("ignore_unavailable"):
            raise _index_not_found(missing[0])
        for name in names:
            self.indices.pop(name, None)
        return 200, {"acknowledged": True}

    def refresh(self, call: Call) -> tuple[int, Json]:
        self.index(call.index).refresh()
        return 200, {"_shards": _SHARDS}

    def index_doc(self, call: Call) -> tuple[int, Json]:
        op_type = call.params.get("op_type", "index")
        if op_type not in ("index", "create"):
            raise EsError(400, "illegal_argument_exception", f"opType must be 'create' or 'index', found: [{op_type}]")
        return self.write(call, op_type == "create", call.expected_version())

    def create_doc(self, call: Call) -> tuple[int, Json]:
        return self.write(call, True, None)

    def write(self, call: Call, create: bool, expected: tuple[int, int] | None) -> tuple[int, Json]:
        if not isinstance(call.body, dict):
            raise EsError(400, "parse_exception", "request body is required")
        return self.index_source(call.index, call.id, call.body, create, expected)

    def index_source(
        self, name: str, doc_id: str, source: Json, create: bool, expected: tuple[int, int] | None
    ) -> tuple[int, Json]:
        """One document write; a missing index is auto-created (AutoCreateIndex), from a template if one matches."""
        if (length := len(doc_id.encode())) > _MAX_ID_BYTES:
            limit = f"must be no longer than {_MAX_ID_BYTES} bytes but was: {length}"
            raise _invalid(f"id [{doc_id}] is too long, {limit}")
        if name not in self.indices:
            _check_index_name(name)
            self.make_index(name, {}, {})
        index = self.indices[name]
        index.check_write(doc_id, create, expected)
        status, result = (200, "updated") if doc_id in index.docs else (201, "created")
        return status, index.written(doc_id, index.put(doc_id, source), result)

    def get_doc(self, call: Call) -> tuple[int, Json]:
        """Realtime: the live document, refreshed or not."""
        doc = self.index(call.index).docs.get(call.id)
        if doc is None:
            return 404, {"_index": call.index, "_id": call.id, "found": False}
        versions = {"_version": doc.version, "_seq_no": doc.seq_no, "_primary_term": 1}
        return 200, {"_index": call.index, "_id": call.id, **versions, "found": True, "_source": doc.source}

    def delete_doc(self, call: Call) -> tuple[int, Json]:
        index = self.index(call.index)
        index.check_write(call.id, False, call.expected_version())
        doc = index.remove(call.id)
        status, result = (200, "deleted") if doc else (404, "not_found")
        return status, index.written(call.id, doc, result)

    def search(self, call: Call) -> tuple[int, Json]:
        return 200, self.index(call.index).search(call.body or {})

    def delete_by_query(self, call: Call) -> tuple[int, Json]:
        index, body = self.index(call.index), call.body or {}
        if unknown := sorted(body.keys() - {"query"}):
            raise _unknown_key(unknown[0], body[unknown[0]])
        conflicts = call.params.get("conflicts", "abort")
        if conflicts not in ("abort", "proceed"):
            reason = f'conflicts may only be "proceed" or "abort" but was [{conflicts}]'
            raise EsError(400, "illegal_argument_exception", reason)
        return index.delete_matching(body.get("query", {"match_all": {}}), conflicts == "proceed")


# HTTP ---------------------------------------------------------------------------------------------
Action = Callable[[Cluster, Call], tuple[int, Json]]
INDEX_ROUTES: list[tuple[str, list[str], Action, set[str]]] = [
    ("/_index_template/{index}", ["PUT"], Cluster.put_template, set()),
    ("/_index_template/{index}", ["GET"], Cluster.get_template, set()),
    ("/{index}", ["PUT"], Cluster.create_index, set()),
    ("/{index}", ["HEAD"], Cluster.index_exists, set()),
    ("/{index}", ["GET"], Cluster.get_indices, set()),
    ("/{index}", ["DELETE"], Cluster.delete_indices, {"ignore_unavailable"}),
    ("/{index}/_refresh", ["GET", "POST"], Cluster.refresh, set()),
    ("/{index}/_create/{id}", ["PUT", "POST"], Cluster.create_doc, set()),
    ("/{index}/_doc/{id}", ["GET"], Cluster.get_doc, set()),
    ("/{index}/_doc/{id}", ["DELETE"], Cluster.delete_doc, {"if_seq_no", "if_primary_term"}),
    ("/{index}/_search", ["GET", "POST"], Cluster.search, set()),
    ("/{index}/_delete_by_query", ["POST"], Cluster.delete_by_query, {"conflicts"}),
]
DOC_PARAMS = {"op_type", "if_seq_no", "if_primary_term"}  # `PUT <index>/_doc/<id>`, served with ingest


def check_params(request: Request, params: set[str]) -> None:
    """RestRequest's check: a parameter no handler consumed is a 400."""
    unknown = sorted(set(request.query_params) - params)
    if unknown:
        noun = "parameter" if len(unknown) == 1 else "parameters"
        listed = ", ".join(f"[{p}]" for p in unknown)
        reason = f"request [{request.url.path}] contains unrecognized {noun}: {listed}"
        raise EsError(400, "illegal_argument_exception", reason)


def call_of(request: Request, body: Any) -> Call:
    path = request.path_params
    return Call(path.get("index", ""), path.get("id", ""), request.query_params, body)


def parse_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EsError(400, "x_content_parse_exception", f"Failed to parse request body: {exc}") from None


def respond(request: Request, status: int, payload: Any) -> Response:
    """JSON with the product header, in the versioned media type when the client asked for one."""
    accept = request.headers.get("accept", "")
    compat = accept.partition(";")[2].strip() if "compatible-with=" in accept else ""
    media_type = f"application/vnd.elasticsearch+json;{compat}" if compat else "application/json"
    body = b"" if request.method == "HEAD" else orjson.dumps(payload)
    return Response(body, status, headers={"X-elastic-product": "Elasticsearch"}, media_type=media_type)
