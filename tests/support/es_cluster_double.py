"""A recording test double of Elasticsearch, not Elasticsearch: the cluster-side APIs a sidecar node uses next to
a cluster, kept in memory and served over HTTP on loopback.

- `GET /`, `GET /_license`, `GET /_xpack`: the version, license and security setting the test chose;
- `PUT/GET/DELETE /_inference/<task>/<id>`: `custom`, `hugging_face` and `openai` endpoints, checked for the
  settings each service requires and refuses. As Elasticsearch validates an endpoint, a PUT calls the service once
  with input `["how big"]`, the request built from the endpoint's own template (custom) or the service's request
  shape, and reads the answer with the endpoint's json_parser paths (or the service's fixed shape); a failed call
  fails the PUT with 400 and stores nothing. Each call is kept in `validations`;
- `PUT/GET/DELETE /_ingest/pipeline[/<id>]` (no pipelines: 404 `{}`, as Elasticsearch answers);
- `POST|GET /_security/user/_has_privileges` and `GET /_security/_authenticate` for the users and API keys a test
  adds, with Elasticsearch's 401 bodies; privileges are resolved against Elasticsearch's action patterns.
With security on, every call must authenticate. Every call is kept in `requests`. Wordings follow Elasticsearch
where they were checked; what the sidecar never sends is refused as not implemented.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sidecar.errors import EsError, illegal_argument, not_found, status_exception
from tests.support.jsonpath import extract
from tests.support.loopback import LoopbackServer

Json = dict[str, Any]
WWW_AUTHENTICATE = ['Basic realm="security", charset="UTF-8"', 'Bearer realm="security"', "ApiKey"]
_PRODUCT = {"X-elastic-product": "Elasticsearch"}
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
# ClusterPrivilegeResolver's patterns for the privileges the tests grant
PRIVILEGE_PATTERNS = {
    "all": ["cluster:*"],
    "manage": ["cluster:*"],
    "monitor": ["cluster:monitor/*"],
    "monitor_ml": ["cluster:monitor/xpack/ml/*"],
    "manage_ml": ["cluster:admin/xpack/ml/*", "cluster:monitor/xpack/ml/*"],
    "manage_inference": [
        "cluster:admin/xpack/inference/*",
        "cluster:monitor/xpack/inference*",
        "cluster:admin/xpack/ml/trained_models/deployment/start",
        "cluster:admin/xpack/ml/trained_models/deployment/stop",
        "cluster:monitor/xpack/ml/trained_models/deployment/infer",
    ],
}
# json_parser keys per task type (CustomServiceSettings.extractResponseParser)
_PARSERS = {
    "text_embedding": ({"text_embeddings"}, {"embedding_type"}),
    "sparse_embedding": ({"token_path", "weight_path"}, set()),
    "completion": ({"completion_result"}, set()),
}
_CUSTOM_KEYS = {
    "url",
    "headers",
    "query_parameters",
    "request",
    "response",
    "secret_parameters",
    "input_type",
    "batch_size",
    "rate_limit",
}
_DENSE_KEYS = {"similarity", "dimensions", "max_input_tokens"}
_SERVICES = {
    "custom": ({"url", "request", "response"}, _CUSTOM_KEYS, {"text_embedding", "sparse_embedding", "completion"}),
    "hugging_face": ({"url", "api_key"}, {"url", "api_key", "rate_limit"}, {"text_embedding", "sparse_embedding"}),
    "openai": (
        {"api_key", "model_id"},
        {"api_key", "model_id", "url", "organization_id", "rate_limit"},
        {"text_embedding"},
    ),
}
_SECRETS = {"secret_parameters", "api_key"}


@dataclass
class Principal:
    username: str
    roles: list[str]
    privileges: list[str]
    api_key_id: str | None = None

    def grants(self, action: str) -> bool:
        if ":" not in action:
            raise illegal_argument(f"checking the privilege name [{action}] is not implemented by this test double")
        patterns = [p for name in self.privileges for p in PRIVILEGE_PATTERNS[name]]
        return any(fnmatch.fnmatchcase(action, pattern) for pattern in patterns)


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
    principals: dict[str, Principal] = field(default_factory=dict)  # Authorization header -> who
    endpoints: dict[str, Json] = field(default_factory=dict)
    pipelines: dict[str, Json] = field(default_factory=dict)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path with query, body
    validations: list[Json] = field(default_factory=list)


class EsClusterDouble(LoopbackServer):
    """The double on a free loopback port, served from a background thread while the `with` block runs."""

    def __init__(self, **state: Any) -> None:
        self.state = ClusterState(**state)
        super().__init__(
            Starlette(
                routes=[
                    Route(path, _endpoint(self.state, handler), methods=methods) for path, methods, handler in _ROUTES
                ]
            )
        )

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


# the custom service's request, as Elasticsearch renders it ---------------------------------------------------
def custom_request(
    settings: Json, inputs: list[str], task_type: str, input_type: str = "internal_ingest"
) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of the call the `custom` service makes for `inputs` (CustomRequest): body values are
    substituted JSON-encoded, url and header values raw; `${input}` is the first input alone for completion.
    `${input_type}` is `input_type.translation[<the request's InputType>]`, else `input_type.default`, else ""
    (EmbeddingParameters, InputTypeTranslator). Translation keys are only ingest, search, classification and
    clustering; ingest pipelines and semantic_text send `internal_ingest`, queries `internal_search`
    (CoordinatedInferenceAction, ShardBulkInferenceActionFilter, SemanticQueryBuilder), so only a direct
    `_inference` call with `input_type` is translated."""
    secrets = settings.get("secret_parameters", {})
    translator = settings.get("input_type", {})
    raw = {**secrets, "input_type": translator.get("translation", {}).get(input_type, translator.get("default", ""))}
    encoded = {key: orjson.dumps(value).decode() for key, value in raw.items()}
    encoded["input"] = orjson.dumps(inputs[0] if task_type == "completion" else inputs).decode()
    url = _substitute(settings["url"], raw, "url")
    query = "&".join(
        f"{_substitute(k, raw, 'query_parameters')}={_substitute(v, raw, 'query_parameters')}"
        for k, v in settings.get("query_parameters", [])
    )
    headers = {"Content-Type": "application/json"} | {
        k: _substitute(v, raw, "headers") for k, v in settings.get("headers", {}).items()
    }
    body = _substitute(settings["request"], encoded, "request").encode()
    return (f"{url}?{query}" if query else url), headers, body


def _substitute(template: str, values: dict[str, str], where: str) -> str:
    rendered = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)
    if leftover := _PLACEHOLDER.search(rendered):
        raise _validation(
            f"Found placeholder [{leftover.group(0)}] in field [{where}] after replacement call, "
            "please check that all templates have a corresponding field definition."
        )
    return rendered


# plumbing -----------------------------------------------------------------------------------------------------
def _endpoint(state: ClusterState, handler: Any) -> Any:
    async def run(request: Request) -> Response:
        raw = await request.body()
        body = orjson.loads(raw) if raw.strip() else None
        uri = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        state.requests.append((request.method, uri, body))
        try:
            principal = _authenticate(state, request, uri)
            status, payload = await handler(state, _Call(request, body, principal))
        except EsError as error:
            response = Response(orjson.dumps(error.envelope()), error.status, _PRODUCT, "application/json")
            for value in error.metadata.get("header", {}).get("WWW-Authenticate", []):
                response.headers.append("WWW-Authenticate", value)
            return response
        return Response(orjson.dumps(payload), status, _PRODUCT, "application/json")

    return run


def _authenticate(state: ClusterState, request: Request, uri: str) -> Principal | None:
    if not state.security:
        return None
    header = request.headers.get("authorization")
    known = state.principals.get(header or "")
    if known is not None:
        return known
    challenge = {"header": {"WWW-Authenticate": WWW_AUTHENTICATE}}
    if not header:
        raise EsError(
            401,
            "security_exception",
            f"missing authentication credentials for REST request [{uri}]",
            metadata=challenge,
        )
    if header.startswith("Basic "):
        username = base64.b64decode(header[6:]).decode().split(":", 1)[0]
        raise EsError(
            401,
            "security_exception",
            f"unable to authenticate user [{username}] for REST request [{uri}]",
            metadata=challenge,
        )
    reason = "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
    raise EsError(401, "security_exception", reason, metadata=challenge)


def _validation(message: str) -> EsError:
    return EsError(400, "validation_exception", f"Validation Failed: 1: {message};")


# GET /, license, xpack ----------------------------------------------------------------------------------------
async def _root(state: ClusterState, call: _Call) -> tuple[int, Json]:
    return 200, {
        "name": "double-1",
        "cluster_name": "double",
        "cluster_uuid": "dOuBlEdOuBlEdOuBlE1234",
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
    checked = {name: who.grants(name) for name in (call.body or {}).get("cluster", [])}
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
async def _put_endpoint(state: ClusterState, call: _Call) -> tuple[int, Json]:
    task_type, endpoint_id = call.request.path_params["task"], call.request.path_params["id"]
    if endpoint_id in state.endpoints:
        raise status_exception(400, f"Inference endpoint [{endpoint_id}] already exists")
    config = _checked_config(task_type, call.body or {})
    learned = await _validate(state, endpoint_id, task_type, config)
    config["service_settings"] |= learned
    state.endpoints[endpoint_id] = {"inference_id": endpoint_id, "task_type": task_type, **config}
    return 200, _public(state.endpoints[endpoint_id])


async def _get_endpoints(state: ClusterState, call: _Call) -> tuple[int, Json]:
    endpoint_id = call.request.path_params.get("id")
    if endpoint_id is None:
        return 200, {"endpoints": [_public(e) for _, e in sorted(state.endpoints.items())]}
    endpoint = state.endpoints.get(endpoint_id)
    task = call.request.path_params.get("task")
    if endpoint is None or (task is not None and endpoint["task_type"] != task):
        raise not_found(f"Inference endpoint not found [{endpoint_id}]")
    return 200, {"endpoints": [_public(endpoint)]}


async def _delete_endpoint(state: ClusterState, call: _Call) -> tuple[int, Json]:
    endpoint_id = call.request.path_params["id"]
    if endpoint_id not in state.endpoints:
        raise not_found(f"Inference endpoint not found [{endpoint_id}]")
    users = sorted(pid for pid, pipeline in state.pipelines.items() if _names(pipeline, endpoint_id))
    if users and call.request.query_params.get("force") != "true":
        raise status_exception(
            400,
            f"Inference endpoint [{endpoint_id}] is referenced by pipelines and cannot be deleted. "
            "Use `force` to delete it anyway, or use `dry_run` to list the pipelines that reference it.",
        )
    del state.endpoints[endpoint_id]
    return 200, {"acknowledged": True, "pipelines": users}


def _names(node: Any, endpoint_id: str) -> bool:
    """An `inference` processor for the endpoint anywhere in a pipeline."""
    if isinstance(node, list):
        return any(_names(item, endpoint_id) for item in node)
    if not isinstance(node, dict):
        return False
    processor = node.get("inference")
    return (isinstance(processor, dict) and processor.get("model_id") == endpoint_id) or _names(
        list(node.values()), endpoint_id
    )


def _checked_config(task_type: str, body: Json) -> Json:
    unknown = set(body) - {"service", "service_settings", "task_settings", "chunking_settings"}
    if unknown:
        raise _validation(f"unknown fields {sorted(unknown)}")
    service = body.get("service")
    if service not in _SERVICES:
        raise status_exception(400, f"Unknown service [{service}]")
    required, allowed, tasks = _SERVICES[service]
    if task_type not in tasks:
        raise status_exception(400, f"The [{service}] service does not support task type [{task_type}]")
    settings = dict(body.get("service_settings") or {})
    if missing := sorted(required - set(settings)):
        raise _validation(f"[service_settings] does not contain the required setting [{missing[0]}]")
    extra = set(settings) - allowed - (_DENSE_KEYS if task_type == "text_embedding" else set())
    if extra:
        raise status_exception(
            400, f"Configuration contains settings [{sorted(extra)}] unknown to the [{service}] service"
        )
    if service == "custom":
        _check_custom(task_type, settings)
    return {"service": service, "service_settings": settings, "task_settings": body.get("task_settings") or {}}


def _check_custom(task_type: str, settings: Json) -> None:
    if not isinstance(settings["request"], str):
        raise _validation(
            "field [request] is not of the expected type. The value [...] cannot be converted to a [String]"
        )
    parser = settings["response"].get("json_parser") or {}
    required, optional = _PARSERS[task_type]
    if missing := sorted(required - set(parser)):
        raise _validation(
            f"[service_settings.response.json_parser] does not contain the required setting [{missing[0]}]"
        )
    if extra := set(parser) - required - optional:
        raise status_exception(
            400, f"Configuration contains settings [{sorted(extra)}] unknown to the [json_parser] service"
        )
    if not all(str(path).startswith("$") for path in parser.values()):
        raise _validation("json_parser paths must start with a dollar sign ($)")


def _public(endpoint: Json) -> Json:
    settings = {k: v for k, v in endpoint["service_settings"].items() if k not in _SECRETS}
    return {**endpoint, "service_settings": settings}


# the validation call ---------------------------------------------------------------------------------------------
async def _validate(state: ClusterState, endpoint_id: str, task_type: str, config: Json) -> Json:
    """Call the service with `["how big"]` and read its answer; returns what Elasticsearch learns (dimensions)."""
    url, headers, body = _service_request(config["service"], config["service_settings"], ["how big"], task_type)
    record: Json = {"endpoint": endpoint_id, "url": url, "headers": headers, "body": orjson.loads(body)}
    state.validations.append(record)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) as response,
        ):
            record["status"], raw = response.status, await response.read()
        record["answer"] = orjson.loads(raw)
        if record["status"] != 200:
            raise ValueError(f"status [{record['status']}]: {raw[:500]!r}")
        record["parsed"] = _parse(config["service"], config["service_settings"], task_type, record["answer"])
    except (aiohttp.ClientError, ValueError, TypeError, KeyError, TimeoutError) as exc:
        cause = status_exception(400, str(exc))
        raise status_exception(
            400,
            "Could not complete inference endpoint creation as validation call to service threw an exception.",
            cause,
        ) from None
    return {"dimensions": len(record["parsed"][0])} if task_type == "text_embedding" else {}


def _service_request(
    service: str, settings: Json, inputs: list[str], task_type: str
) -> tuple[str, dict[str, str], bytes]:
    if service == "custom":
        return custom_request(settings, inputs, task_type)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings['api_key']}"}
    if service == "hugging_face":
        return settings["url"], headers, orjson.dumps({"inputs": inputs})
    url = settings.get("url", "https://api.openai.com/v1/embeddings")
    return url, headers, orjson.dumps({"input": inputs, "model": settings["model_id"]})


def _parse(service: str, settings: Json, task_type: str, answer: Any) -> Any:
    """What the service's response parser extracts, or `ValueError` where it would fail."""
    if service == "custom":
        if not isinstance(answer, dict):
            raise ValueError("the custom service needs a JSON object")
        parser = settings["response"]["json_parser"]
        if task_type == "text_embedding":
            return _vectors(extract(answer, parser["text_embeddings"]))
        if task_type == "sparse_embedding":
            return _sparse(extract(answer, parser["token_path"]), extract(answer, parser["weight_path"]))
        found = extract(answer, parser["completion_result"])
        if not (isinstance(found, str) or (isinstance(found, list) and all(isinstance(s, str) for s in found))):
            raise ValueError(f"expected a list or a string but received [{type(found).__name__}]")
        return [found] if isinstance(found, str) else found
    if service == "hugging_face" and task_type == "sparse_embedding":
        if not isinstance(answer, list) or not all(isinstance(e, dict) for e in answer):
            raise ValueError("hugging_face sparse answers are arrays of token -> weight objects")
        return _sparse([list(e) for e in answer], [list(e.values()) for e in answer])
    if service == "hugging_face":
        return _vectors(answer["embeddings"] if isinstance(answer, dict) else answer)
    return _vectors([item["embedding"] for item in answer["data"]])


def _vectors(found: Any) -> list[list[float]]:
    if not isinstance(found, list) or not all(
        isinstance(v, list) and all(isinstance(x, (int, float)) for x in v) for v in found
    ):
        raise ValueError("embeddings must be lists of numbers")
    return found


def _sparse(tokens: Any, weights: Any) -> list[dict[str, float]]:
    if len(tokens) != len(weights) or any(len(t) != len(w) for t, w in zip(tokens, weights, strict=False)):
        raise ValueError("The extracted tokens list and the weights list must be of equal size")
    if not all(isinstance(x, (int, float)) for w in weights for x in w):
        raise ValueError("weights must be numbers")
    return [{str(t): float(x) for t, x in zip(ts, ws, strict=True)} for ts, ws in zip(tokens, weights, strict=True)]


_ROUTES: list[tuple[str, list[str], Any]] = [
    ("/", ["GET"], _root),
    ("/_license", ["GET"], _license),
    ("/_xpack", ["GET"], _xpack),
    ("/_security/user/_has_privileges", ["GET", "POST"], _has_privileges),
    ("/_security/_authenticate", ["GET"], _authenticate_route),
    ("/_ingest/pipeline", ["GET"], _get_pipelines),
    ("/_ingest/pipeline/{id}", ["GET"], _get_pipelines),
    ("/_ingest/pipeline/{id}", ["PUT"], _put_pipeline),
    ("/_ingest/pipeline/{id}", ["DELETE"], _delete_pipeline),
    ("/_inference", ["GET"], _get_endpoints),
    ("/_inference/{id}", ["GET"], _get_endpoints),
    ("/_inference/{id}", ["DELETE"], _delete_endpoint),
    ("/_inference/{task}/{id}", ["GET"], _get_endpoints),
    ("/_inference/{task}/{id}", ["PUT"], _put_endpoint),
    ("/_inference/{task}/{id}", ["DELETE"], _delete_endpoint),
]
