"""`_infer` in both forms: 8.3+ (many docs, `inference_results`) and 8.0's `deployment/_infer` (one doc, bare)."""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn, cast

import orjson
from starlette.requests import Request
from starlette.responses import Response

from sidecar.api.endpoint import Context
from sidecar.api.wire import EsRequest, deprecation_warning, error_response, raw_json, render
from sidecar.cluster.forward import FORWARDED_HEADER, INPUT_TYPE_HEADER, WAIT_HEADER, NoRoute
from sidecar.deployment.cache import InferenceCache
from sidecar.deployment.manager import LocalDeployment
from sidecar.deployment.states import AssignmentState
from sidecar.errors import EsError, status_exception, validation_failed
from sidecar.models.aliases import resolve_model_id
from sidecar.models.catalog import model_or_404
from sidecar.models.tasks import apply_update
from sidecar.settings import Settings
from sidecar.timevalue import TimeValue, parse_time
from sidecar.workers.pool import QueueFull

# RestInferTrainedModelDeploymentAction: deprecated by the `_infer` API that 8.3 added (elasticsearch#86361)
_DEPRECATED_SINCE = "8.3.0"
_DEPRECATION = (
    "[POST /_ml/trained_models/{model_id}/deployment/_infer] is deprecated! "
    "Use [POST /_ml/trained_models/{model_id}/_infer] instead."
)
# NlpInferenceInput's wording, from the change that added text input (elasticsearch#90450, Oct 2022); that its
# first release is 8.6 is UNCONFIRMED: earlier releases worded it as NlpTask.extractInput did in 8.0
_NLP_INFERENCE_INPUT_SINCE = "8.6.0"


async def infer(ctx: Context, request: EsRequest) -> Response:
    """8.3+: `{"inference_results": [...]}`, one object per document."""
    results = await _run(ctx, request, legacy=False)
    body = b'{"inference_results":[' + b",".join(results) + b"]}"
    return _respond(body, request)


async def infer_deployment(ctx: Context, request: EsRequest) -> Response:
    """8.0-8.2: exactly one document, its result object alone.

    From 8.3 a deprecated route that says so on every answer its handler gives, errors included (Elasticsearch's
    deprecation handler runs inside its security filter, so a refused login carries no warning)."""
    if not ctx.settings.claims(_DEPRECATED_SINCE):
        results = await _run(ctx, request, legacy=True)
        return _respond(results[0], request)
    try:
        results = await _run(ctx, request, legacy=True)
        response = _respond(results[0], request)
    except EsError as error:
        response = error_response(error, request.params)
    response.headers.append("Warning", deprecation_warning(ctx.settings.es_version, _DEPRECATION))
    return response


def _respond(body: bytes, request: EsRequest) -> Response:
    """The results arrive serialized from the workers; re-render only when pretty or filter_path ask for it."""
    if request.params.str("pretty") is None and request.params.str("filter_path") is None:
        return raw_json(body)
    return render(orjson.loads(body), params=request.params)


async def _run(ctx: Context, request: EsRequest, legacy: bool) -> list[bytes]:
    model_id = request.path_params["model_id"]
    query_timeout = request.params.str("timeout")
    request.params.finish()
    if legacy and not request.has_body:
        raise status_exception(400, "requires body")
    body = request.object(required=True)
    timeout = parse_time(query_timeout or str(body.get("timeout", "10s")), "timeout")
    return await run_inference(ctx, request.http, model_id, body, timeout, legacy)


async def run_inference(
    ctx: Context,
    http: Request,
    model_id: str,
    body: dict[str, Any],
    timeout: TimeValue,
    legacy: bool = False,
    input_type: str | None = None,
    wait: bool = False,
) -> list[bytes]:
    """Run an `_infer` body here, or on another node when this one does not serve the model or is full.

    Returns one serialized Elasticsearch result object per document. Every route that infers comes through here.
    `input_type` (`ingest` | `search`) selects the model's prefix string; the REST `_infer` API applies none
    (Elasticsearch's PrefixType.NONE), ingest and search callers apply theirs. `wait`: when this node is full and
    no other has room, queue here anyway (bounded by memory) rather than answer 429.
    """
    forwarded = FORWARDED_HEADER in http.headers
    if forwarded:
        input_type = http.headers.get(INPUT_TYPE_HEADER)
        wait = WAIT_HEADER in http.headers
    if not forwarded and model_id not in ctx.deployments.local:  # a forwarded id is resolved already
        model_id = await resolve_model_id(ctx.store, model_id)
    deployment = ctx.deployments.local.get(model_id)
    if deployment is None:
        if forwarded:
            await _not_served(ctx, model_id, legacy)
        return await _forward(ctx, model_id, body, timeout, legacy, input_type, need_room=False, wait=wait)
    texts = _texts(body, deployment.config, legacy, ctx.settings)
    prefix = (deployment.config.get("prefix_strings") or {}).get(input_type or "", "")
    update = body.get("inference_config")
    options = _options(model_id, deployment.config, update)
    inputs = [prefix + t for t in texts] if prefix else texts
    options_key = InferenceCache.options_key(None if update is None else options)
    keys = [(text, options_key) for text in inputs]
    results = deployment.cache.lookup(keys)
    misses = [i for i, result in enumerate(results) if result is None]
    if not misses:  # every document answered from the cache: no queue, no worker
        return cast(list[bytes], results)
    if not forwarded and not deployment.pool.has_room(len(misses)):
        try:
            return await _forward(ctx, model_id, body, timeout, legacy, input_type, need_room=True)
        except EsError as error:  # no other node had room: wait here, or be refused here
            if error.status != 429:
                raise
    missed = [inputs[i] for i in misses]
    tokens = _estimated_tokens([texts[i] for i in misses], options)
    future = deployment.pool.submit(missed, options, timeout, tokens, wait=wait)
    for i, result in zip(misses, await _await_result(http, deployment, future, timeout), strict=True):
        deployment.cache.put(keys[i], result)
        results[i] = result
    return cast(list[bytes], results)


async def _forward(
    ctx: Context,
    model_id: str,
    body: dict[str, Any],
    timeout: TimeValue,
    legacy: bool,
    input_type: str | None,
    need_room: bool,
    wait: bool = False,
) -> list[bytes]:
    """Another node serves it (or has room): forward; with nobody to forward to, answer as Elasticsearch would.
    `wait` goes along when this node does not serve the model: the node that does waits for a worker instead."""
    view = ctx.deployments
    candidates = ctx.forwarder.candidates(view.live, view.serving.get(model_id, []), model_id, need_room)
    if not candidates and not need_room:  # the view may predate an allocation that just started: read its routes
        candidates = ctx.forwarder.candidates(view.live, await view.serving_now(model_id), model_id, need_room)
    try:
        return await ctx.forwarder.infer(candidates, model_id, body, timeout, input_type, wait)
    except NoRoute:
        if need_room:
            raise QueueFull() from None
        await _not_served(ctx, model_id, legacy)


async def _not_served(ctx: Context, model_id: str, legacy: bool) -> NoReturn:
    """Raise the error Elasticsearch gives for a model that is missing or not deployed."""
    config = await model_or_404(ctx.store, model_id)
    if config.get("model_type") != "pytorch":
        raise status_exception(
            400, f"Only [pytorch] models are supported by _infer, provided model [{model_id}] has type [{config.get('model_type')}]"
        )
    deployment = await asyncio.to_thread(ctx.store.get_deployment, model_id)
    if deployment is not None and deployment.get("state") == AssignmentState.STOPPING:
        raise status_exception(409, f"Trained model [{model_id}] is [stopping]")
    if deployment is not None:
        raise status_exception(409, f"Trained model deployment [{model_id}] is not allocated to any nodes")
    if legacy:
        raise status_exception(409, f"Trained model [{model_id}] is not deployed")
    raise status_exception(409, f"Model [{model_id}] must be deployed to use. Please deploy with the start trained model deployment API.")


def _texts(body: dict[str, Any], config: dict[str, Any], legacy: bool, settings: Settings) -> list[str]:
    docs = body.get("docs")
    if docs is None:
        raise validation_failed(["[docs] must not be null"])
    if not isinstance(docs, list) or not docs:
        raise validation_failed(["at least one document is required" + (" " if legacy else "")])
    if legacy and len(docs) > 1:
        raise validation_failed(["multiple documents are not supported"], "validation_exception")
    max_docs, max_chars = settings.max_docs_per_request, settings.max_text_chars
    if len(docs) > max_docs:
        raise validation_failed([f"the number of documents [{len(docs)}] exceeds the maximum of [{max_docs}]"])
    field = config["input"]["field_names"][0]
    texts = []
    for doc in docs:
        value = doc.get(field) if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise _input_error(field, value, settings.claims(_NLP_INFERENCE_INPUT_SINCE))
        if len(value) > max_chars:
            raise status_exception(400, f"input value for field [{field}] is [{len(value)}] characters long; the maximum is [{max_chars}]")
        texts.append(value)
    return texts


def _input_error(field: str, value: Any, current: bool) -> EsError:
    """A document without a string in the input field fails the whole request, every version alike: from 8.3 a
    document's failure comes back from its node and `TransportInternalInferModelAction` fails the request with it
    ("Any failure fails all requests"); only the wording changed, with `NlpInferenceInput`."""
    if value is None and current:
        return status_exception(400, f"Input field [{field}] does not exist in the source document")
    if value is None:
        return status_exception(400, f"no value could be found for input field [{field}]")
    if current:
        return status_exception(400, f"Input value [{_java_string(value)}] for field [{field}] must be a string")
    return status_exception(400, f"input value [{_java_string(value)}] for field [{field}] is not a string")


def _options(model_id: str, config: dict[str, Any], update: Any) -> dict[str, Any]:
    task, task_config = next(iter(config["inference_config"].items()))
    if update is None:
        return task_config
    if not isinstance(update, dict) or len(update) != 1:
        raise EsError(400, "x_content_parse_exception", "inference_config must be an object with one inference type mapped to an object.")
    kind, settings = next(iter(update.items()))
    if kind != task:
        raise status_exception(
            400, f"Trained model [{model_id}] is configured for task [{task}] but called with task [{kind}]"
        )
    return apply_update(task, task_config, settings or {})


def _estimated_tokens(texts: list[str], options: dict[str, Any]) -> list[int]:
    """A cheap upper-ish bound for the batch budget; the worker re-chunks by real token counts."""
    tokenization = next(iter(options.get("tokenization", {"bert": {}}).values()))
    limit = tokenization.get("max_sequence_length", 512)
    return [min(limit, len(text) // 3 + 2) for text in texts]


async def _await_result(
    http: Request, deployment: LocalDeployment, future: asyncio.Future[list[Any]], timeout: TimeValue
) -> list[bytes]:
    """Wait for the workers, the timeout, or the client leaving, whichever comes first."""
    disconnect = asyncio.ensure_future(http.receive())
    try:
        done, _ = await asyncio.wait({future, disconnect}, timeout=timeout.seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        disconnect.cancel()
    if future in done:
        return future.result()
    future.cancel()  # leaves the queue without a forward pass
    if not done:
        deployment.pool.timed_out()
        raise status_exception(408, f"timeout [{timeout}] waiting for inference result")
    raise status_exception(499, "client closed the connection")


def _java_string(value: Any) -> str:
    return orjson.dumps(value).decode() if isinstance(value, (dict, list)) else str(value).lower() if isinstance(value, bool) else str(value)
