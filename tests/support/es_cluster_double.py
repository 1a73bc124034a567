"""A recording test double of Elasticsearch, not Elasticsearch: the APIs a sidecar node and its tests use next to a
cluster, kept in memory and served over HTTP on loopback, as a chosen release (`version`, see es_release) answers
them. Its parts, each built from Elasticsearch's source:

- `GET /`, `GET /_license`, `GET /_xpack`: the version, license and security setting the test chose;
- media types (RestCompatibleVersionHelper): `compatible-with=N` must name the release's major or the one before,
  else 400 `media_type_header_exception`; a route the release lacks answers RestController's 400
  `no handler found for uri [...] and method [...]`;
- `_inference` (es_inference): PUT (the license check from 8.18, the service's settings, the validation call with
  `["how big"]` that fails the PUT when the service fails and teaches `dimensions`), GET by task and id, by id alone
  (8.13+), `_all`, in the release's shape (`models`/`model_id` before 8.14); DELETE, refusing with 409 an endpoint a
  pipeline or (8.16+) a `semantic_text` mapping uses unless `force` (8.15+);
- `_ingest/pipeline` PUT/GET/DELETE (no pipelines: 404 `{}`), and ingest itself (es_ingest): `PUT <index>/_doc/<id>`,
  `POST <index>/_doc` and `_bulk` run the `pipeline` parameter's or the index's `index.default_pipeline` before
  writing, every document of a bulk at once (IngestService), the `inference` processor calling endpoints through
  one node's Sender (the endpoint's request, rate limit and retries);
- indices and documents (es_double), auto-created on write from index templates or with dynamic mappings;
- `_security/user/_has_privileges` and `_security/_authenticate` (es_security) for the users and API keys a test
  adds, with Elasticsearch's 401 bodies. With security on, every call must authenticate.
Every call is kept in `requests`, every validation call in `validations`, every service call in `sender.attempts`.
What no caller sends is refused as not implemented.
"""

from __future__ import annotations

import asyncio
import base64
import fnmatch
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.errors import EsError, illegal_argument, not_found, status_exception
from tests.support import es_double
from tests.support.es_inference import (
    INGEST,
    INTERNAL_INGEST,
    SECRETS,
    TEST_INPUT,
    RetrySettings,
    Sender,
    ServiceFailure,
    checked_config,
    custom_request,
    service_request,
)
from tests.support.es_ingest import IngestError, now, references, run_pipeline
from tests.support.es_release import Release
from tests.support.es_security import Principal
from tests.support.loopback import LoopbackServer

__all__ = ["EsClusterDouble", "custom_request"]
Json = dict[str, Any]
WWW_AUTHENTICATE = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
_LICENSED = ("enterprise", "trial")


@dataclass
class _Call:
    request: Request
    body: Any
    principal: Principal | None


@dataclass
class ClusterState:
    version: str = "9.1.5"
    license_type: str = "trial"
    license_status: str = "active"
    security: bool = False
    retry: RetrySettings = field(default_factory=RetrySettings)
    principals: dict[str, Principal] = field(default_factory=dict)  # Authorization header -> who
    endpoints: dict[str, Json] = field(default_factory=dict)
    pipelines: dict[str, Json] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path with query, body
    validations: list[Json] = field(default_factory=list)
    indices: es_double.Cluster = field(default_factory=es_double.Cluster)
    sender: Sender = field(init=False)

    def __post_init__(self) -> None:
        self.sender = Sender(Release(self.version), self.retry)

    @property
    def release(self) -> Release:
        return Release(self.version)


Handler = Callable[[ClusterState, _Call], Awaitable[tuple[int, Any]]]


class EsClusterDouble(LoopbackServer):
    """The double on a free loopback port, served from a background thread while the `with` block runs.

    `version` picks the release, for the double's whole life (its routes and its sender are made for it).
    """

    def __init__(self, **state: Any) -> None:
        self.state = ClusterState(**state)
        super().__init__(Starlette(routes=_routes(self.state)))

    @property
    def release(self) -> Release:
        return self.state.release

    def add_user(self, username: str, password: str, privileges: list[str], roles: list[str] | None = None) -> str:
        """A native user; returns the `Authorization` header that authenticates it."""
        header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.state.principals[header] = Principal(
            username, roles if roles is not None else [f"{username}_role"], privileges
        )
        return header

    def add_api_key(self, key_id: str, owner: str, privileges: list[str]) -> str:
        header = "ApiKey " + base64.b64encode(f"{key_id}:secret-{key_id}".encode()).decode()
        self.state.principals[header] = Principal(owner, [], privileges, key_id)
        return header

    def calls(self, method: str, prefix: str) -> list[tuple[str, str, Any]]:
        return [call for call in self.state.requests if call[0] == method and call[1].startswith(prefix)]

    def __exit__(self, *exc: object) -> None:
        self.state.sender.close_threadsafe()
        super().__exit__(*exc)


# plumbing -----------------------------------------------------------------------------------------------------
def _serve(state: ClusterState, handler: Handler, raw_body: bool = False) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        raw = await request.body()
        uri = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        try:
            body = raw if raw_body else es_double.parse_body(raw)
            state.requests.append((request.method, uri, body))
            _check_media_types(state.release, request)
            principal = _authenticate(state, request, uri)
            status, payload = await handler(state, _Call(request, body, principal))
        except EsError as error:
            response = es_double.respond(request, error.status, error.envelope())
            for value in error.metadata.get("header", {}).get("WWW-Authenticate", []):
                response.headers.append("WWW-Authenticate", value)
            return response
        return es_double.respond(request, status, payload)

    return run


def _check_media_types(release: Release, request: Request) -> None:
    """RestCompatibleVersionHelper: a `compatible-with` version outside [major - 1, major] is refused."""
    for header in ("accept", "content-type"):
        value = request.headers.get(header, "")
        if "compatible-with=" not in value:
            continue
        version = value.rpartition("compatible-with=")[2].split(";")[0].strip()
        older, major = release.compatible_majors
        if version not in (str(older), str(major)):
            name = "Accept" if header == "accept" else "Content-Type"
            cause = status_exception(
                400, f"{name} version must be either version {major} or {older}, but found {version}. {name}={value}"
            )
            reason = f"Invalid media-type value on headers [{name}]"
            raise EsError(400, "media_type_header_exception", reason, cause)


def _authenticate(state: ClusterState, request: Request, uri: str) -> Principal | None:
    if not state.security:
        return None
    header = request.headers.get("authorization")
    known = state.principals.get(header or "")
    if known is not None:
        return known
    challenge = {"header": {"WWW-Authenticate": WWW_AUTHENTICATE}}
    if not header:
        reason = f"missing authentication credentials for REST request [{uri}]"
        raise EsError(401, "security_exception", reason, metadata=challenge)
    if header.startswith("Basic "):
        username = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        reason = f"unable to authenticate user [{username}] for REST request [{uri}]"
        raise EsError(401, "security_exception", reason, metadata=challenge)
    reason = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
    raise EsError(401, "security_exception", reason, metadata=challenge)


def _no_handler(call: _Call) -> EsError:
    """RestController: a path no handler serves answers 400 with a bare string as its error."""
    request = call.request
    return _StringError(400, "", f"no handler found for uri [{request.url.path}] and method [{request.method}]")


class _StringError(EsError):
    def envelope(self) -> Json:
        return {"error": self.reason, "status": self.status}


async def _unhandled(state: ClusterState, call: _Call) -> tuple[int, Json]:
    raise _no_handler(call)


# GET /, license, xpack ----------------------------------------------------------------------------------------
async def _root(state: ClusterState, call: _Call) -> tuple[int, Json]:
    return 200, {
        "name": "double-1",
        "cluster_name": "double",
        "cluster_uuid": state.indices.uuid,
        "version": {"number": state.version, "build_flavor": "default", "lucene_version": "10.2.2"},
        "tagline": "You Know, for Search",
    }


async def _license(state: ClusterState, call: _Call) -> tuple[int, Json]:
    return 200, {
        "license": {
            "status": state.license_status,
            "uid": "double",
            "type": state.license_type,
            "issuer": "elasticsearch",
        }
    }


async def _xpack(state: ClusterState, call: _Call) -> tuple[int, Json]:
    return 200, {
        "features": {
            "security": {"available": True, "enabled": state.security},
            "ml": {"available": True, "enabled": True},
        }
    }


# security -----------------------------------------------------------------------------------------------------
async def _has_privileges(state: ClusterState, call: _Call) -> tuple[int, Json]:
    who = _user(call)
    checked = {name: who.has_privilege(name) for name in (call.body or {}).get("cluster", [])}
    return 200, {
        "username": who.username,
        "has_all_requested": all(checked.values()),
        "cluster": checked,
        "index": {},
        "application": {},
    }


async def _authenticate_route(state: ClusterState, call: _Call) -> tuple[int, Json]:
    who = _user(call)
    out: Json = {
        "username": who.username,
        "roles": who.roles,
        "full_name": None,
        "email": None,
        "metadata": {},
        "enabled": True,
    }
    if who.api_key_id is not None:
        return 200, out | {
            "authentication_type": "api_key",
            "api_key": {"id": who.api_key_id, "name": f"key-{who.api_key_id}"},
        }
    return 200, out | {"authentication_realm": {"name": "native1", "type": "native"}, "authentication_type": "realm"}


def _user(call: _Call) -> Principal:
    if call.principal is None:
        raise illegal_argument("security is disabled on this test double")
    return call.principal


# pipelines ----------------------------------------------------------------------------------------------------
async def _put_pipeline(state: ClusterState, call: _Call) -> tuple[int, Json]:
    state.pipelines[call.request.path_params["id"]] = call.body
    return 200, {"acknowledged": True}


async def _get_pipelines(state: ClusterState, call: _Call) -> tuple[int, Json]:
    wanted = call.request.path_params.get("id")
    found = {pid: p for pid, p in state.pipelines.items() if wanted is None or fnmatch.fnmatchcase(pid, wanted)}
    return (200 if found else 404), found


async def _delete_pipeline(state: ClusterState, call: _Call) -> tuple[int, Json]:
    if state.pipelines.pop(call.request.path_params["id"], None) is None:
        raise not_found(f"pipeline [{call.request.path_params['id']}] is missing")
    return 200, {"acknowledged": True}


# inference endpoints --------------------------------------------------------------------------------------------
def _license_check(state: ClusterState) -> None:
    """InferencePlugin.INFERENCE_API_FEATURE (enterprise), checked from 8.18/9.0."""
    if state.release.checks_license and (state.license_type not in _LICENSED or state.license_status != "active"):
        raise EsError(403, "security_exception", "current license is non-compliant for [inference]")


async def _put_endpoint(state: ClusterState, call: _Call) -> tuple[int, Json]:
    task_type, endpoint_id = call.request.path_params["task"], call.request.path_params["id"]
    _license_check(state)
    if endpoint_id in state.endpoints:
        raise status_exception(400, f"Inference endpoint [{endpoint_id}] already exists")
    config = checked_config(state.release, task_type, call.body or {})
    endpoint = {"inference_id": endpoint_id, "task_type": task_type, **config}
    endpoint["service_settings"] |= await _validate(state, endpoint)
    state.endpoints[endpoint_id] = endpoint
    return 200, _public(state, endpoint)


async def _validate(state: ClusterState, endpoint: Json) -> Json:
    """ModelValidatorBuilder: call the service with `["how big"]`; a failure fails the PUT. Returns what
    TextEmbeddingModelValidator learns (dimensions)."""
    url, headers, body = service_request(endpoint, TEST_INPUT, INGEST)
    record: Json = {"endpoint": endpoint["inference_id"], "url": url, "headers": headers, "body": orjson.loads(body)}
    state.validations.append(record)
    try:
        record["parsed"] = await state.sender.send(endpoint, TEST_INPUT, INGEST)
    except ServiceFailure as failure:
        record["status"] = failure.status
        raise status_exception(
            400,
            "Could not complete inference endpoint creation as validation call to service threw an exception.",
            status_exception(failure.status, str(failure)),
        ) from None
    record["status"] = 200
    return {"dimensions": len(record["parsed"][0])} if endpoint["task_type"] == "text_embedding" else {}


async def _get_endpoints(state: ClusterState, call: _Call) -> tuple[int, Json]:
    endpoint_id = call.request.path_params.get("id", "_all")
    key, _ = state.release.listing
    if endpoint_id in ("_all", "*"):
        return 200, {key: [_public(state, e) for _, e in sorted(state.endpoints.items())]}
    return 200, {key: [_public(state, _endpoint_of(state, call))]}


def _endpoint_of(state: ClusterState, call: _Call) -> Json:
    endpoint_id = call.request.path_params["id"]
    endpoint = state.endpoints.get(endpoint_id)
    if endpoint is None:
        raise EsError(404, "resource_not_found_exception", f"Inference endpoint not found [{endpoint_id}]")
    task = call.request.path_params.get("task")
    if task is not None and endpoint["task_type"] != task:  # InferenceExceptions.mismatchedTaskTypeException
        raise status_exception(
            400,
            f"Requested task type [{task}] does not match the inference endpoint's task type [{endpoint['task_type']}]",
        )
    return endpoint


async def _delete_endpoint(state: ClusterState, call: _Call) -> tuple[int, Json]:
    release, params = state.release, call.request.query_params
    es_double.check_params(call.request, set(release.delete_parameters))
    endpoint = _endpoint_of(state, call)
    endpoint_id = endpoint["inference_id"]
    pipelines = sorted(pid for pid, pipeline in state.pipelines.items() if references(pipeline, endpoint_id))
    if params.get("dry_run") == "true":
        return 200, {"acknowledged": False, "pipelines": pipelines}
    if release.delete_parameters and params.get("force") != "true":
        if pipelines:  # TransportDeleteInferenceEndpointAction.endpointIsReferencedInPipelines
            raise status_exception(
                409,
                f"Inference endpoint {endpoint_id} is referenced by pipelines and cannot be deleted. "
                "Use `force` to delete it anyway, or use `dry_run` to list the pipelines that reference it.",
            )
        indices = _semantic_text_users(state, endpoint_id) if release.checks_semantic_text else []
        if indices:  # wording after TransportDeleteInferenceEndpointAction (UNCONFIRMED word for word)
            raise status_exception(
                409,
                f"Inference endpoint {endpoint_id} is being used in the mapping for indexes: {indices}. Ensure that "
                "no index mappings are using this inference endpoint, or use force to ignore this warning and "
                "delete the inference endpoint.",
            )
    del state.endpoints[endpoint_id]
    return 200, {"acknowledged": True, **({"pipelines": pipelines} if release.delete_parameters else {})}


def _semantic_text_users(state: ClusterState, endpoint_id: str) -> list[str]:
    def uses(properties: Json) -> bool:
        return any(
            (
                spec.get("type") == "semantic_text"
                and endpoint_id in (spec.get("inference_id"), spec.get("search_inference_id"))
            )
            or uses(spec.get("properties", {}))
            for spec in properties.values()
        )

    return sorted(name for name, index in state.indices.indices.items() if uses(index.mappings["properties"]))


def _public(state: ClusterState, endpoint: Json) -> Json:
    """As GET renders it: without secrets, the id under the release's key."""
    _, id_key = state.release.listing
    settings = {k: v for k, v in endpoint["service_settings"].items() if k not in SECRETS}
    rest = {k: v for k, v in endpoint.items() if k not in ("inference_id", "service_settings")}
    return {id_key: endpoint["inference_id"], **rest, "service_settings": settings}


# ingest -----------------------------------------------------------------------------------------------------------
async def _infer(state: ClusterState, endpoint_id: str, inputs: list[str]) -> list[Any]:
    """What the `inference` processor gets for an endpoint id (TransportCoordinatedInferenceAction ->
    BaseTransportInferenceAction, which checks the license from 8.18)."""
    endpoint = state.endpoints.get(endpoint_id)
    if endpoint is None:
        raise IngestError(f"Inference endpoint not found [{endpoint_id}]")
    try:
        _license_check(state)
        return await state.sender.send(endpoint, inputs, INTERNAL_INGEST)  # InferenceProcessor's input type
    except EsError as error:
        raise IngestError(error.reason) from None
    except ServiceFailure as failure:
        raise IngestError(str(failure)) from None


async def _ingested(state: ClusterState, index: str, pipeline_id: str | None, source: Json) -> Json:
    """The document as the pipeline leaves it: the request's `pipeline`, else the index's default pipeline."""
    if pipeline_id is None:
        existing = state.indices.indices.get(index)
        settings = (
            existing.settings if existing else es_double.flat(state.indices.template_for(index).get("settings", {}))
        )
        pipeline_id = settings.get("index.default_pipeline")
    if pipeline_id in (None, "_none"):
        return source
    pipeline = state.pipelines.get(pipeline_id)
    if pipeline is None:
        raise illegal_argument(f"pipeline with id [{pipeline_id}] does not exist")
    try:
        return await run_pipeline(pipeline_id, pipeline, source, lambda m, i: _infer(state, m, i), now())
    except IngestError as error:
        raise illegal_argument(str(error)) from None


async def _index_doc(state: ClusterState, call: _Call) -> tuple[int, Json]:
    es_double.check_params(call.request, es_double.DOC_PARAMS | {"pipeline"})
    if not isinstance(call.body, dict):
        raise EsError(400, "parse_exception", "request body is required")
    path, params = call.request.path_params, call.request.query_params
    doc_call = es_double.Call(path["index"], path.get("id") or _auto_id(), params, call.body)
    source = await _ingested(state, doc_call.index, params.get("pipeline"), call.body)
    expected = doc_call.expected_version()
    return state.indices.index_source(doc_call.index, doc_call.id, source, params.get("op_type") == "create", expected)


async def _bulk(state: ClusterState, call: _Call) -> tuple[int, Json]:
    """Every document's pipeline runs at once (IngestService.executeBulkRequest), then the writes, in order."""
    es_double.check_params(call.request, {"pipeline", "refresh"})
    lines = [orjson.loads(line) for line in call.body.splitlines() if line.strip()]
    default_index = call.request.path_params.get("index")
    actions = []
    while lines:
        [(op, meta)] = lines.pop(0).items()
        if op not in ("index", "create"):
            raise illegal_argument(f"bulk action [{op}] is not implemented by this test double")
        meta = {
            "_index": default_index,
            "_id": _auto_id(),
            "pipeline": call.request.query_params.get("pipeline"),
        } | meta
        actions.append((op, meta, lines.pop(0)))
    ingested = await asyncio.gather(
        *(_ingested(state, meta["_index"], meta["pipeline"], source) for _, meta, source in actions),
        return_exceptions=True,
    )
    items = []
    for (op, meta, _), outcome in zip(actions, ingested, strict=True):
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            status, result = state.indices.index_source(meta["_index"], meta["_id"], outcome, op == "create", None)
            items.append({op: {**result, "status": status}})
        except EsError as error:
            failure = {"type": error.type, "reason": error.reason}
            items.append({op: {"_index": meta["_index"], "_id": meta["_id"], "status": error.status, "error": failure}})
    if call.request.query_params.get("refresh") in ("", "true", "wait_for"):
        for name in {meta["_index"] for _, meta, _ in actions if meta["_index"] in state.indices.indices}:
            state.indices.indices[name].refresh()
    errors = any("error" in next(iter(item.values())) for item in items)
    return 200, {"took": 0, "errors": errors, "items": items}


def _auto_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes[:15]).decode()


# routes -----------------------------------------------------------------------------------------------------------
def _index_handler(action: es_double.Action, params: set[str]) -> Handler:
    """The index and document APIs: synchronous, so each call is atomic, as a primary orders its operations."""

    async def handle(state: ClusterState, call: _Call) -> tuple[int, Any]:
        es_double.check_params(call.request, params)
        return action(state.indices, es_double.call_of(call.request, call.body))

    return handle


def _routes(state: ClusterState) -> list[Route]:
    release = state.release
    one_segment = _get_endpoints if release.one_segment_get else _unhandled
    one_segment_delete = _delete_endpoint if release.one_segment_get else _unhandled
    table: list[tuple[str, list[str], Handler]] = [
        ("/", ["GET"], _root),
        ("/_license", ["GET"], _license),
        ("/_xpack", ["GET"], _xpack),
        ("/_security/user/_has_privileges", ["GET", "POST"], _has_privileges),
        ("/_security/_authenticate", ["GET"], _authenticate_route),
        ("/_ingest/pipeline", ["GET"], _get_pipelines),
        ("/_ingest/pipeline/{id}", ["GET"], _get_pipelines),
        ("/_ingest/pipeline/{id}", ["PUT"], _put_pipeline),
        ("/_ingest/pipeline/{id}", ["DELETE"], _delete_pipeline),
        ("/_inference", ["GET"], one_segment),
        ("/_inference/_all", ["GET"], _get_endpoints),
        ("/_inference/{id}", ["GET"], one_segment),
        ("/_inference/{id}", ["DELETE"], one_segment_delete),
        ("/_inference/{task}/{id}", ["GET"], _get_endpoints),
        ("/_inference/{task}/{id}", ["PUT"], _put_endpoint),
        ("/_inference/{task}/{id}", ["DELETE"], _delete_endpoint),
        ("/{index}/_doc/{id}", ["PUT", "POST"], _index_doc),
        ("/{index}/_doc", ["POST"], _index_doc),
    ]
    routes = [Route(path, _serve(state, handler), methods=methods) for path, methods, handler in table]
    routes += [
        Route(path, _serve(state, _bulk, raw_body=True), methods=["POST", "PUT"])
        for path in ("/_bulk", "/{index}/_bulk")
    ]
    routes += [
        Route(path, _serve(state, _index_handler(action, params)), methods=methods)
        for path, methods, action, params in es_double.INDEX_ROUTES
    ]
    everything = ["GET", "PUT", "POST", "DELETE", "HEAD"]
    return [*routes, Route("/{path:path}", _serve(state, _unhandled), methods=everything)]
