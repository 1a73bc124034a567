"""The distributed store: hidden indices of the cluster the nodes sit next to, shared by nodes on many hosts.

Used the way Kibana uses Elasticsearch: one hidden index per kind of record (`<prefix>-models`, ...) with a strict
mapping; creates use `op_type=create`, so a duplicate loses with a 409; updates are read-modify-write guarded by
`if_seq_no`/`if_primary_term`, retried when another writer got there first. A model's document is the lock that
serialises its deletion with its deployment and its aliases (see `delete_model`, `create_deployment` and
`put_model_alias`). Reads by id are realtime GETs, which see
every acknowledged write; a search sees only refreshed segments, so a search that must see a write of a moment ago
refreshes its index first, and the nodes' loops read what the indices' own refresh (every second) shows. Every request
names `compatible-with=8` (see `sidecar.elastic.client`), and each index has an index template, so that an index
deleted under the nodes comes back with its mapping.
"""

from __future__ import annotations

import base64
import random
import re
import time
from collections.abc import Callable, Iterator
from functools import cached_property, wraps
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote

from elasticsearch import (
    ApiError,
    BadRequestError,
    ConflictError,
    Elasticsearch,
    NotFoundError,
)

from sidecar.elastic.client import compatible_headers
from sidecar.errors import EsError, illegal_argument, status_exception
from sidecar.ids import new_id
from sidecar.store.base import AlreadyExists, AliasChanged, ModelDeployed, ModelMissing, PartInfo, Store

Doc = dict[str, Any]
_KEYWORD = {"type": "keyword"}
_OPAQUE = {"type": "object", "enabled": False}  # kept in _source, never indexed: any shape, no mapping growth


def _strict(**fields: Doc) -> Doc:
    return {"dynamic": "strict", "properties": fields}


_MAPPINGS = {
    "models": _strict(model_id=_KEYWORD, config=_OPAQUE),
    "aliases": _strict(alias=_KEYWORD, model_id=_KEYWORD),  # one document per alias, its id the alias
    "definitions": _strict(
        model_id=_KEYWORD,
        part={"type": "integer"},
        total_parts={"type": "integer"},
        total_definition_length={"type": "long"},
        length={"type": "long"},
        definition={"type": "binary"},
    ),
    "vocabularies": _strict(model_id=_KEYWORD, vocabulary=_OPAQUE),
    # A deployment's routing entries live in its own document: a route can never outlive its deployment.
    "deployments": _strict(model_id=_KEYWORD, deployment=_OPAQUE, routes=_OPAQUE),
    "nodes": _strict(node_id=_KEYWORD, node=_OPAQUE, last_seen={"type": "double"}),
    "meta": _strict(cluster_uuid=_KEYWORD),
}
# refresh_interval explicit: a shard with the default is search-idle after 30 s and is refreshed only by a search
_SETTINGS = {
    "index": {"hidden": True, "number_of_shards": 1, "auto_expand_replicas": "0-1", "refresh_interval": "1s"}
}
_TEMPLATE_PRIORITY = 500  # above the stack's own templates (100-200)
_PART_FIELDS = ["part", "total_parts", "total_definition_length", "length"]
_ALL: Doc = {"match_all": {}}
_MAX_HITS = 10_000  # index.max_result_window's default: the most one search may answer
_CONFLICT_RETRIES = 30
_BACKOFF_S = 0.005
_PREFIX = re.compile(r"[a-z0-9][a-z0-9._-]*")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _as_es_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Let the cluster's own refusals (a missing privilege, a full queue, ...) reach callers as it sent them."""

    @wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except ApiError as exc:
            error = exc.body.get("error") if isinstance(exc.body, dict) else None
            if not isinstance(error, dict):
                raise EsError(exc.meta.status, "exception", str(exc)) from exc
            raise _es_error(exc.meta.status, error) from exc

    return call


def _es_error(status: int, error: Doc) -> EsError:
    cause = _es_error(status, error["caused_by"]) if error.get("caused_by") else None
    return EsError(status, error.get("type", ""), error.get("reason") or "", cause)


def _kept_changing(doc_id: str, index: str) -> EsError:
    return status_exception(409, f"[{doc_id}] in [{index}] kept changing; gave up after {_CONFLICT_RETRIES} attempts")


def _part_id(model_id: str, part: int) -> str:
    return f"{model_id}_{part}"


def _without_route(node_id: str) -> Callable[[Doc], Doc | None]:
    def change(doc: Doc) -> Doc | None:
        if node_id not in doc["routes"]:
            return None
        return {**doc, "routes": {n: r for n, r in doc["routes"].items() if n != node_id}}

    return change


class ElasticsearchStore(Store):
    """State in the cluster's indices; the caller's client carries the URL, the credentials and the CA certificates."""

    def __init__(self, client: Elasticsearch, prefix: str = "sidecar") -> None:
        if not _PREFIX.fullmatch(prefix):
            rule = "lowercase letters, digits, '.', '_' or '-', starting with a letter or a digit"
            raise illegal_argument(f"index prefix [{prefix}] must be {rule}")
        self._es = client
        self._prefix = prefix
        self._ready: set[str] = set()

    @property
    def indices(self) -> tuple[str, ...]:
        """Every index this store uses: what an operator grants privileges on, snapshots, or deletes."""
        return tuple(self._name(kind) for kind in _MAPPINGS)

    @cached_property
    def cluster_uuid(self) -> str:
        """Written once with op_type=create, so nodes starting at the same moment all keep the first one written."""
        try:
            self._create("meta", "cluster_uuid", {"cluster_uuid": new_id()})
        except AlreadyExists:
            pass
        return self._source("meta", "cluster_uuid")["cluster_uuid"]  # type: ignore[index]

    # models -------------------------------------------------------------------------------------
    def create_model(self, config: Doc) -> None:
        """Also sweeps what a crashed `delete_model` of this id left, so the new model's uploads start clean."""
        model_id = config["model_id"]
        self._create("models", model_id, {"model_id": model_id, "config": config})
        self._delete_model_data(model_id)

    def get_model(self, model_id: str) -> Doc | None:
        doc = self._source("models", model_id)
        return doc["config"] if doc else None

    def list_models(self) -> list[Doc]:
        """A refreshed search: a model PUT a moment ago, on any node, is listed."""
        return [doc["config"] for doc in self._search("models", _ALL, "model_id")]

    def delete_model(self, model_id: str) -> bool:
        """The config goes first, so the model leaves the API in one step; its parts and vocabulary follow.

        The config is deleted under `if_seq_no` of a read made before looking for a deployment: a
        `create_deployment` that wrote its deployment after that look re-indexes the config, so this delete
        fails its check and looks again. A crash after the config's delete leaves chunks no config points at:
        nothing reads them, and `create_model` of the same id sweeps them. The model's aliases are swept after
        the config: a `put_model_alias` confirmed before the delete is swept, one confirmed after it fails.
        """
        for attempt in range(_CONFLICT_RETRIES):
            found = self._get("models", model_id)
            if found is None:
                return False
            if self._get("deployments", model_id) is not None:
                raise ModelDeployed(model_id)
            if self._delete("models", model_id, found):
                self._delete_by_query("aliases", {"term": {"model_id": model_id}})
                self._delete_model_data(model_id)
                return True
            time.sleep(random.uniform(0, _BACKOFF_S * attempt))
        raise _kept_changing(model_id, self._name("models"))

    def _delete_model_data(self, model_id: str) -> None:
        self._delete("vocabularies", model_id)
        self._delete_by_query("definitions", {"term": {"model_id": model_id}})

    def get_model_alias(self, alias: str) -> str | None:
        doc = self._source("aliases", alias)
        return doc["model_id"] if doc else None

    def model_aliases(self) -> dict[str, str]:
        """A refreshed search: an alias PUT a moment ago, on any node, is listed."""
        return {doc["alias"]: doc["model_id"] for doc in self._search("aliases", _ALL, "alias")}

    def put_model_alias(self, alias: str, model_id: str, expected: str | None) -> None:
        """Written under the compare (`op_type=create` for a new alias, else `if_seq_no` of the read that saw
        `expected`), then confirmed as `create_deployment` confirms: the model's config re-indexed unchanged under
        `if_seq_no`. A model deleted before the confirmation fails it, and what the alias named before comes back."""
        if self._get("models", model_id) is None:
            raise ModelMissing(model_id)
        found = self._get("aliases", alias)
        if (found["_source"]["model_id"] if found else None) != expected:
            raise AliasChanged(alias)
        doc = {"alias": alias, "model_id": model_id}
        if found is None:
            try:
                self._create("aliases", alias, doc)
            except AlreadyExists:
                raise AliasChanged(alias) from None
        elif not self._write("aliases", alias, doc, found):
            raise AliasChanged(alias)
        if not self._modify("models", model_id, lambda config: config):
            self._withdraw_alias(alias, model_id, found)
            raise ModelMissing(model_id)

    def _withdraw_alias(self, alias: str, written: str, previous: Doc | None) -> None:
        """Undo a `put_model_alias` whose model went (the deletion's sweep may take the alias at any moment): put
        back what the alias named before, unless another writer has moved it since or that model went too."""
        for attempt in range(_CONFLICT_RETRIES):
            current = self._get("aliases", alias)
            if current is not None and current["_source"]["model_id"] != written:
                return
            if previous is None:
                if current is None or self._delete("aliases", alias, current):
                    return
            elif self._put_back(alias, previous["_source"], current):
                named = previous["_source"]["model_id"]
                if not self._modify("models", named, lambda config: config):
                    self.delete_model_alias(alias, named)
                return
            time.sleep(random.uniform(0, _BACKOFF_S * attempt))
        raise _kept_changing(alias, self._name("aliases"))

    def _put_back(self, alias: str, doc: Doc, current: Doc | None) -> bool:
        if current is not None:
            return self._write("aliases", alias, doc, current)
        try:
            self._create("aliases", alias, doc)
        except AlreadyExists:
            return False
        return True

    def delete_model_alias(self, alias: str, model_id: str) -> str | None:
        """Deleted under `if_seq_no` of the read that saw it name `model_id`."""
        for attempt in range(_CONFLICT_RETRIES):
            found = self._get("aliases", alias)
            if found is None:
                return None
            named: str = found["_source"]["model_id"]
            if named != model_id or self._delete("aliases", alias, found):
                return named
            time.sleep(random.uniform(0, _BACKOFF_S * attempt))
        raise _kept_changing(alias, self._name("aliases"))

    def put_definition_part(self, model_id: str, info: PartInfo, data: bytes) -> None:
        doc = {
            "model_id": model_id,
            "part": info.part,
            "total_parts": info.total_parts,
            "total_definition_length": info.total_definition_length,
            "length": len(data),
            "definition": base64.b64encode(data).decode(),
        }
        self._create("definitions", _part_id(model_id, info.part), doc)

    def definition_parts(self, model_id: str) -> list[PartInfo]:
        """A refreshed search: `_start` checks a definition is whole right after its last part was uploaded."""
        docs = self._search("definitions", {"term": {"model_id": model_id}}, "part", _PART_FIELDS)
        return [PartInfo(**doc) for doc in docs]

    def iter_definition(self, model_id: str) -> Iterator[bytes]:
        for info in self.definition_parts(model_id):
            doc = self._source("definitions", _part_id(model_id, info.part))
            if doc is not None:
                yield base64.b64decode(doc["definition"])

    def put_vocabulary(self, model_id: str, vocabulary: Doc) -> None:
        self._create("vocabularies", model_id, {"model_id": model_id, "vocabulary": vocabulary})

    def get_vocabulary(self, model_id: str) -> Doc | None:
        doc = self._source("vocabularies", model_id)
        return doc["vocabulary"] if doc else None

    # deployments --------------------------------------------------------------------------------
    def create_deployment(self, deployment: Doc) -> None:
        """Written, then confirmed by re-indexing the model's config unchanged under `if_seq_no`.

        The confirmation fails only if the config changed or went since it was read; a config that went means a
        `delete_model` got there first, and the deployment is withdrawn. One that succeeds makes any
        `delete_model` that had not yet seen the deployment fail its own check (see there).
        """
        model_id = deployment["model_id"]
        if self._get("models", model_id) is None:
            raise ModelMissing(model_id)
        self._create("deployments", model_id, {"model_id": model_id, "deployment": deployment, "routes": {}})
        if not self._modify("models", model_id, lambda doc: doc):
            self._delete("deployments", model_id)
            raise ModelMissing(model_id)

    def get_deployment(self, model_id: str) -> Doc | None:
        doc = self._source("deployments", model_id)
        return doc["deployment"] if doc else None

    def list_deployments(self, fresh: bool = True) -> list[Doc]:
        """`fresh`: a refreshed search, for a caller that must see a `_start` written a moment ago on any node."""
        return [doc["deployment"] for doc in self._search("deployments", _ALL, "model_id", fresh=fresh)]

    def update_deployment(self, model_id: str, changes: Doc) -> None:
        self._modify("deployments", model_id, lambda doc: {**doc, "deployment": {**doc["deployment"], **changes}})

    def delete_deployment(self, model_id: str) -> None:
        """Its routing entries go with it: they are part of the document."""
        self._delete("deployments", model_id)

    def put_route(self, model_id: str, node_id: str, state: str, reason: str = "", error_status: int = 0) -> None:
        """A deployment deleted meanwhile fails the write's seq_no check; the retry finds nothing to update."""
        route = {"routing_state": state, "reason": reason, "error_status": error_status}
        self._modify("deployments", model_id, lambda doc: {**doc, "routes": {**doc["routes"], node_id: route}})

    def routes(self, model_id: str) -> dict[str, Doc]:
        doc = self._source("deployments", model_id)
        return dict(sorted(doc["routes"].items())) if doc else {}

    def delete_route(self, model_id: str, node_id: str) -> None:
        self._modify("deployments", model_id, _without_route(node_id))

    # nodes --------------------------------------------------------------------------------------
    def heartbeat(self, node: Doc) -> None:
        """A plain overwrite: only this node writes its document. `last_seen` is this node's clock."""
        self._write("nodes", node["id"], {"node_id": node["id"], "node": node, "last_seen": time.time()})

    def nodes(self, fresh: bool = True) -> list[Doc]:
        """`fresh`: a refreshed search, so a node counts from its first heartbeat on."""
        docs = self._search("nodes", _ALL, "node_id", fresh=fresh)
        return [{**doc["node"], "last_seen": doc["last_seen"]} for doc in docs]

    def remove_node(self, node_id: str) -> None:
        """Its entries are stripped from every deployment a refreshed search finds, each under the OCC check."""
        self._delete("nodes", node_id)
        for doc in self._search("deployments", _ALL, "model_id", ["model_id"]):
            self._modify("deployments", doc["model_id"], _without_route(node_id))

    # documents ----------------------------------------------------------------------------------
    def _name(self, kind: str) -> str:
        return f"{self._prefix}-{kind}"

    def _request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """Every call, in the version-8 compatible format that 8.x and 9.x clusters both take."""
        query = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in params.items() if v is not None}
        return self._es.perform_request(method, path, params=query or None, headers=compatible_headers(), body=body)

    @_as_es_errors
    def _index(self, kind: str) -> str:
        """The index for `kind`, made the first time this store touches it: an index template first, so that a write
        after someone deleted the index re-creates it (auto-create) with its mapping rather than dynamic ones."""
        name = self._name(kind)
        if kind not in self._ready:
            template = {"settings": _SETTINGS, "mappings": _MAPPINGS[kind]}
            body = {"index_patterns": [name], "priority": _TEMPLATE_PRIORITY, "template": template}
            self._request("PUT", f"/_index_template/{name}", body)
            self._create_index(name)
            self._ready.add(kind)
        return name

    def _create_index(self, name: str) -> None:
        """Another node creating the same index at the same moment is as good."""
        try:
            self._request("PUT", f"/{name}")
        except BadRequestError as exc:
            if exc.error != "resource_already_exists_exception":
                raise

    @_as_es_errors
    def _get(self, kind: str, doc_id: str) -> Doc | None:
        """A realtime GET (the default): it sees every acknowledged write, refreshed or not."""
        try:
            return self._request("GET", f"/{self._index(kind)}/_doc/{quote(doc_id, safe='')}").body
        except NotFoundError:
            return None

    def _source(self, kind: str, doc_id: str) -> Doc | None:
        found = self._get(kind, doc_id)
        return found["_source"] if found else None

    @_as_es_errors
    def _create(self, kind: str, doc_id: str, doc: Doc) -> None:
        """`_create` is op_type=create: the cluster refuses an existing id with a 409, whoever raced us."""
        try:
            self._request("PUT", f"/{self._index(kind)}/_create/{quote(doc_id, safe='')}", doc)
        except ConflictError:
            raise AlreadyExists(doc_id) from None

    @_as_es_errors
    def _write(self, kind: str, doc_id: str, doc: Doc, expected: Doc | None = None) -> bool:
        """Index `doc`; given `expected` (a GET's answer), only if that is still the current version."""
        occ = {"if_seq_no": expected["_seq_no"], "if_primary_term": expected["_primary_term"]} if expected else {}
        try:
            self._request("PUT", f"/{self._index(kind)}/_doc/{quote(doc_id, safe='')}", doc, **occ)
        except ConflictError:
            return False
        return True

    def _modify(self, kind: str, doc_id: str, change: Callable[[Doc], Doc | None]) -> bool:
        """Read-modify-write: `change` maps the current source to the new one (None: nothing to write).

        A write that lost to another re-reads and re-applies `change`, so no concurrent change is lost.
        False if the document is not there (any more).
        """
        for attempt in range(_CONFLICT_RETRIES):
            found = self._get(kind, doc_id)
            if found is None:
                return False
            doc = change(found["_source"])
            if doc is None or self._write(kind, doc_id, doc, found):
                return True
            time.sleep(random.uniform(0, _BACKOFF_S * attempt))  # writers that keep colliding fall out of step
        raise _kept_changing(doc_id, self._name(kind))

    @_as_es_errors
    def _delete(self, kind: str, doc_id: str, expected: Doc | None = None) -> bool:
        """Delete `doc_id`; given `expected` (a GET's answer), only if that is still the current version."""
        occ = {"if_seq_no": expected["_seq_no"], "if_primary_term": expected["_primary_term"]} if expected else {}
        try:
            self._request("DELETE", f"/{self._index(kind)}/_doc/{quote(doc_id, safe='')}", **occ)
        except (NotFoundError, ConflictError):
            return False
        return True

    @_as_es_errors
    def _search(
        self, kind: str, query: Doc, sort: str, fields: list[str] | None = None, fresh: bool = True
    ) -> list[Doc]:
        """`fresh`: refresh first, for callers that list what they (or a peer) just wrote; otherwise the search sees
        what the cluster's own refresh (every second) made visible. A deleted index lists nothing."""
        index = self._index(kind)
        source = {"includes": fields} if fields else True
        body = {"query": query, "sort": [{sort: "asc"}], "size": _MAX_HITS, "_source": source}
        try:
            if fresh:
                self._request("POST", f"/{index}/_refresh")
            found = self._request("POST", f"/{index}/_search", body)
        except NotFoundError:
            return []
        return [hit["_source"] for hit in found["hits"]["hits"]]

    @_as_es_errors
    def _delete_by_query(self, kind: str, query: Doc) -> None:
        """Refresh first: delete-by-query finds its documents with a search, which sees only refreshed ones.

        `conflicts=proceed`: a chunk rewritten meanwhile is skipped rather than failing the whole sweep.
        """
        index = self._index(kind)
        try:
            self._request("POST", f"/{index}/_refresh")
            self._request("POST", f"/{index}/_delete_by_query", {"query": query}, conflicts="proceed")
        except NotFoundError:
            pass
