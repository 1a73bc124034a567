"""The routes an Elasticsearch cluster's inference endpoints call, each answered through `run_inference`.

- `POST /_sidecar/custom/<model_id>`: the `custom` service (8.19.x, 9.1+), body `{"input": ...}`;
- `POST /_sidecar/hf/<model_id>`: the `hugging_face` service (8.12+), body `{"inputs": [...]}`;
- `POST /v1/embeddings`: OpenAI's embeddings shape, for the `openai` service and OpenAI-compatible tools.

With a shared secret set they accept only `Authorization: Bearer <secret>`. Errors come in the format each service
parses. Dense vectors are scaled to unit length, so `cosine` and `dot_product` endpoints agree (`dot_product`, which
`custom` and `openai` endpoints store when no similarity is given, needs unit vectors).

Under load a callback waits for a worker instead of taking a 429: the cluster gives a document up after a few
429s (from 8.15 `RetryingHttpSender` makes at most 3 attempts, about 1 s then 2 s apart; 8.12-8.14 retry for
30 s; a `custom` endpoint's 5xx is never retried, `CustomResponseHandler`). Only the node's in-flight-requests
breaker (the memory callbacks may hold while they wait) answers them 429, and the callback deadline 408.

The model's `prefix_strings` follow the body's `input_type` (`ingest`, the default, or `search`), which a `custom`
endpoint fills from its `${input_type}` template; `hugging_face` and `openai` requests carry none, so they get the
ingest prefix.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.endpoint import Context
from sidecar.api.params import Params
from sidecar.api.routes.infer import run_inference
from sidecar.api.wire import EsRequest, raw_json
from sidecar.elastic.secret import bearer_matches
from sidecar.errors import EsError, illegal_argument, status_exception
from sidecar.models.aliases import resolve_model_id
from sidecar.models.catalog import model_or_404
from sidecar.timevalue import TimeValue

# How long a callback may wait for a worker. The cluster's HTTP client sets no read timeout (only
# `xpack.inference.http.connect_timeout`, 5 s, HttpClientManager) and ingest waits for the answer without limit
# (InferModelAction DEFAULT_TIMEOUT_FOR_INGEST; semantic_text: ShardBulkInferenceActionFilter, TimeValue.MAX_VALUE),
# so a document keeps its vector as long as its callback waits: far longer than a queue of what the cluster's
# connections hold (20 per cluster node) takes to drain. Callers that wait less have given up by then (a PUT's
# validation call and a direct `_inference` call, 30 s, InferenceAction.Request.DEFAULT_TIMEOUT; a query's
# inference, `xpack.inference.query_timeout`, 10 s on newer releases); a callback cannot tell them from ingest
# (endpoints.INPUT_TYPE).
_DEADLINE = TimeValue(120.0, "2m")
_DENSE, _SPARSE = "text_embedding", "text_expansion"
INGEST, SEARCH = "ingest", "search"

Answer = Callable[[Context, EsRequest], Awaitable[Any]]


@dataclass(frozen=True)
class Callback:
    """A route behind the shared secret (checked before its body is read, `check_secret`): the answer serialized,
    a failure, a refusal included, as `error_body` with its status."""

    answer: Answer
    error_body: Callable[[EsError], Any]

    async def handle(self, ctx: Context, request: EsRequest) -> Response:
        try:
            return raw_json(orjson.dumps(await self.answer(ctx, request), option=orjson.OPT_SERIALIZE_NUMPY))
        except EsError as error:
            return self.refuse(error)

    def refuse(self, error: EsError, params: Params | None = None) -> Response:
        return raw_json(orjson.dumps(self.error_body(error)), error.status)


def _callback(error_body: Callable[[EsError], Any]) -> Callable[[Answer], Callback]:
    return lambda answer: Callback(answer, error_body)


@_callback(lambda error: error.envelope())  # custom turns any JSON error body into its message
async def custom(ctx: Context, request: EsRequest) -> Any:
    """Dense: `{"data":[{"embedding":[...]}]}`; sparse: `{"data":[{"embedding":[{"token","weight"}]}]}`; any
    other task: `{"result": "<the task's result JSON>"}` (a list of them when `input` is a list)."""
    model_id = request.path_params["model_id"]
    body = request.object(required=True)
    inputs = body.get("input")
    config = await _config(ctx, model_id)
    results = await _infer(ctx, request, model_id, config, _texts(inputs, "input"), _input_type(body))
    task = _task(config)
    if task == _DENSE:
        return {"data": [{"embedding": vector} for vector in _unit_vectors(results, config)]}
    if task == _SPARSE:
        return {
            "data": [
                {"embedding": [{"token": t, "weight": w} for t, w in tokens.items()]}
                for tokens in _values(results, config)
            ]
        }
    completions = [result.decode() for result in results]
    return {"result": completions[0] if isinstance(inputs, str) else completions}


@_callback(lambda error: {"error": error.reason})
async def hugging_face(ctx: Context, request: EsRequest) -> Any:
    """Dense: `[[...], ...]`; sparse: `[{token: weight}, ...]`, one per input."""
    model_id = request.path_params["model_id"]
    body = request.object(required=True)
    texts = _texts(body.get("inputs"), "inputs")
    config = await _config(ctx, model_id)
    _require(model_id, config, (_DENSE, _SPARSE), "/_sidecar/hf")
    results = await _infer(ctx, request, model_id, config, texts, _input_type(body))
    return _unit_vectors(results, config) if _task(config) == _DENSE else _values(results, config)


@_callback(lambda error: {"error": {"message": error.reason, "type": error.type, "param": None, "code": None}})
async def openai_embeddings(ctx: Context, request: EsRequest) -> Any:
    """`{"input": [...] | "...", "model": <model id>}`; `encoding_format: base64` gets little-endian float32."""
    body = request.object(required=True)
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise illegal_argument("[model] must be the id of a deployed text_embedding model")
    config = await _config(ctx, model_id)
    _require(model_id, config, (_DENSE,), "/v1/embeddings")
    texts = _texts(body.get("input"), "input")
    vectors = _unit_vectors(await _infer(ctx, request, model_id, config, texts, _input_type(body)), config)
    encode = _base64 if body.get("encoding_format") == "base64" else _as_is
    data = [{"object": "embedding", "index": i, "embedding": encode(vector)} for i, vector in enumerate(vectors)]
    return {"object": "list", "data": data, "model": model_id}


async def check_secret(ctx: Context, http: Request) -> None:
    if ctx.callback_secret is not None and not bearer_matches(http.headers.get("authorization"), ctx.callback_secret):
        raise EsError(401, "security_exception", "the callback secret is missing or wrong")


async def _config(ctx: Context, model_id: str) -> dict[str, Any]:
    """The deployed config when the model runs here (no store read on the hot path), else the stored one."""
    local = ctx.deployments.local.get(model_id)
    if local is not None:
        return local.config
    return await model_or_404(ctx.store, await resolve_model_id(ctx.store, model_id))


async def _infer(
    ctx: Context, request: EsRequest, model_id: str, config: dict[str, Any], texts: list[str], input_type: str
) -> list[bytes]:
    """Wait for a worker, here or on a node with room."""
    docs = {"docs": [{config["input"]["field_names"][0]: text} for text in texts]}
    return await run_inference(ctx, request.http, model_id, docs, _DEADLINE, input_type=input_type, wait=True)


def _input_type(body: dict[str, Any]) -> str:
    """`ingest` (also for an empty value, what a `custom` endpoint without `input_type` settings sends) or `search`."""
    value = body.get("input_type") or INGEST
    if value not in (INGEST, SEARCH):
        raise illegal_argument(f"[input_type] must be [{INGEST}] or [{SEARCH}], got [{value}]")
    return value


def _texts(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    raise illegal_argument(f"[{key}] must be a string or a non-empty array of strings")


def _task(config: dict[str, Any]) -> str:
    return next(iter(config["inference_config"]))


def _require(model_id: str, config: dict[str, Any], tasks: Sequence[str], route: str) -> None:
    task = _task(config)
    if task not in tasks:
        raise status_exception(
            400, f"model [{model_id}] is a [{task}] model; {route} serves [{', '.join(tasks)}] models"
        )


def _values(results: list[bytes], config: dict[str, Any]) -> list[Any]:
    """Each result's value (`results_field`, `predicted_value` unless configured otherwise)."""
    field = config["inference_config"][_task(config)].get("results_field", "predicted_value")
    return [orjson.loads(result)[field] for result in results]


def _unit_vectors(results: list[bytes], config: dict[str, Any]) -> np.ndarray:
    vectors = np.asarray(_values(results, config), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=vectors.copy(), where=norms > 0)


def _base64(vector: np.ndarray) -> str:
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()


def _as_is(vector: np.ndarray) -> np.ndarray:
    return vector
