"""The inference plugin of the test double: inference endpoints of the `custom`, `hugging_face` and `openai`
services, the requests each service makes, how it reads the answers, and how a cluster node paces and retries them.

- Settings: each service's required and accepted keys (CustomServiceSettings, HuggingFaceServiceSettings,
  OpenAiEmbeddingsServiceSettings; unknown settings refused as `throwIfNotEmptyMap` does). `rate_limit` on
  hugging_face only where the release reads it.
- Requests: `custom` renders its `request` template (CustomRequest: body values JSON-encoded, url and header values
  raw, `${input}` the first input alone for completion); `hugging_face` sends `{"inputs": [...]}` with
  `Authorization: Bearer <api_key>` (HuggingFaceInferenceRequest); `openai` `{"input": [...], "model": ...}`.
- Answers: custom's json_parser paths (MapPathExtractor), hugging_face's dense and sparse shapes, openai's `data`.
- Sending (`Sender`): per endpoint at most `requests_per_minute / 60` calls a second with no burst (from 8.15:
  RequestExecutorService's RateLimiter, accumulated tokens limit 1); at most `queue_capacity` waiting requests per
  node (xpack.inference.http.request_executor.queue_capacity, 2000), more are rejected; each call retried as its
  service's ResponseHandler says (custom: 429 only, CustomResponseHandler; hugging_face: 429, 502, 503; openai: 429,
  500, 503; a connection failure always), with RetryableAction's jittered delay (a random wait up to a bound that
  starts at `initial_delay` and doubles up to `max_delay_bound`) until `timeout`, and from 8.15 after 3 attempts in
  all (RetryingHttpSender: MAX_RETIES counts every try, the first included). The failure's message is BaseResponseHandler's.
- `batch_size` bounds the inputs of one call only in chunked inference (`semantic_text`, EmbeddingRequestChunker),
  which the double does not run: the ingest `inference` processor sends a document's inputs in one call whatever
  the endpoint's batch_size.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from sidecar.errors import EsError, status_exception
from tests.support.es_release import Release
from tests.support.jsonpath import extract

Json = dict[str, Any]
_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
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
# service: (required settings, accepted settings, task types)
_SERVICES = {
    "custom": ({"url", "request", "response"}, _CUSTOM_KEYS, {"text_embedding", "sparse_embedding", "completion"}),
    "hugging_face": ({"url", "api_key"}, {"url", "api_key", "rate_limit"}, {"text_embedding", "sparse_embedding"}),
    "openai": (
        {"api_key", "model_id"},
        {"api_key", "model_id", "url", "organization_id", "rate_limit"},
        {"text_embedding"},
    ),
}
SECRETS = {"secret_parameters", "api_key"}
# requests_per_minute when an endpoint names none (CustomServiceSettings, HuggingFaceServiceSettings, OpenAi...)
_DEFAULT_RPM = {"custom": 10_000, "hugging_face": 3_000, "openai": 3_000}
_RETRIED = {"custom": {429}, "hugging_face": {429, 502, 503}, "openai": {429, 500, 503}}
TEST_INPUT = ["how big"]  # ServiceIntegrationValidator's input, sent as InputType.INGEST
INGEST, INTERNAL_INGEST = "ingest", "internal_ingest"


class ServiceFailure(Exception):
    """A call that failed for good: the message Elasticsearch reports, and whether another try might succeed."""

    def __init__(self, message: str, retryable: bool, status: int = 400) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


def validation(message: str) -> EsError:
    return EsError(400, "validation_exception", f"Validation Failed: 1: {message};")


# settings -------------------------------------------------------------------------------------------------------
def checked_config(release: Release, task_type: str, body: Json) -> Json:
    """The endpoint's stored config, or the 400 Elasticsearch answers the PUT with."""
    unknown = set(body) - {"service", "service_settings", "task_settings", "chunking_settings"}
    if unknown:
        raise validation(f"unknown fields {sorted(unknown)}")
    service = body.get("service")
    if service not in release.services:
        raise status_exception(400, f"Unknown service [{service}]")
    required, allowed, tasks = _SERVICES[service]
    if service == "hugging_face" and not release.hugging_face_rate_limit:
        allowed = allowed - {"rate_limit"}
    if task_type not in tasks:
        raise status_exception(400, f"The [{service}] service does not support task type [{task_type}]")
    settings = dict(body.get("service_settings") or {})
    if missing := sorted(required - set(settings)):
        raise validation(f"[service_settings] does not contain the required setting [{missing[0]}]")
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
        raise validation(
            "field [request] is not of the expected type. The value [...] cannot be converted to a [String]"
        )
    parser = settings["response"].get("json_parser") or {}
    required, optional = _PARSERS[task_type]
    if missing := sorted(required - set(parser)):
        raise validation(
            f"[service_settings.response.json_parser] does not contain the required setting [{missing[0]}]"
        )
    if extra := set(parser) - required - optional:
        raise status_exception(
            400, f"Configuration contains settings [{sorted(extra)}] unknown to the [json_parser] service"
        )
    if not all(str(path).startswith("$") for path in parser.values()):
        raise validation("json_parser paths must start with a dollar sign ($)")
    custom_request(settings, TEST_INPUT, task_type)  # CustomService.validateConfiguration renders it once


# requests ---------------------------------------------------------------------------------------------------------
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
        raise validation(
            f"Found placeholder [{leftover.group(0)}] in field [{where}] after replacement call, "
            "please check that all templates have a corresponding field definition."
        )
    return rendered


def service_request(endpoint: Json, inputs: list[str], input_type: str) -> tuple[str, dict[str, str], bytes]:
    service, settings, task_type = endpoint["service"], endpoint["service_settings"], endpoint["task_type"]
    if service == "custom":
        return custom_request(settings, inputs, task_type, input_type)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {settings['api_key']}"}
    if service == "hugging_face":
        return settings["url"], headers, orjson.dumps({"inputs": inputs})
    url = settings.get("url", "https://api.openai.com/v1/embeddings")
    return url, headers, orjson.dumps({"input": inputs, "model": settings["model_id"]})


# answers ----------------------------------------------------------------------------------------------------------
def parse(endpoint: Json, answer: Any) -> list[Any]:
    """One result per input (a vector, a token -> weight map, a string), or `ValueError` where the parser fails."""
    service, settings, task_type = endpoint["service"], endpoint["service_settings"], endpoint["task_type"]
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


# sending ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RetrySettings:
    """xpack.inference.http.retry.* (RetrySettings): seconds; tests may shorten them as an operator may."""

    initial_delay: float = 1.0
    max_delay_bound: float = 5.0
    timeout: float = 30.0


@dataclass
class Attempt:
    """One HTTP call the sender made, for tests to read."""

    endpoint: str
    inputs: list[str]
    at: float
    status: int | None = None  # None: the connection failed


@dataclass
class Sender:
    """One cluster node's outbound inference traffic (HttpRequestSender + RequestExecutorService + retries)."""

    release: Release
    retry: RetrySettings = field(default_factory=RetrySettings)
    queue_capacity: int = 2000
    attempts: list[Attempt] = field(default_factory=list)
    _next_slot: dict[str, float] = field(default_factory=dict)
    _waiting: int = 0
    _session: aiohttp.ClientSession | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    async def send(self, endpoint: Json, inputs: list[str], input_type: str) -> list[Any]:
        """The endpoint's results for `inputs`, or ServiceFailure once its retries are spent."""
        if self._waiting >= self.queue_capacity:
            raise ServiceFailure(
                f"Failed to execute task for inference id [{endpoint['inference_id']}] because the request service "
                "queue is full",
                False,
                429,
            )
        started, bound, attempts = time.monotonic(), self.retry.initial_delay, 0
        while True:
            attempts += 1
            self._waiting += 1
            try:
                await self._paced(endpoint)
            finally:
                self._waiting -= 1
            try:
                return await self._once(endpoint, inputs, input_type)
            except ServiceFailure as failure:
                out_of_time = time.monotonic() - started >= self.retry.timeout
                out_of_tries = self.release.max_attempts is not None and attempts >= self.release.max_attempts
                if not failure.retryable or out_of_time or out_of_tries:
                    raise
            await asyncio.sleep(random.uniform(0, bound))
            bound = min(bound * 2, self.retry.max_delay_bound)

    def close_threadsafe(self) -> None:
        """Close the connection pool on the loop that made it (the double's server thread)."""
        if self._session is not None and self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._session.close(), self._loop).result(10)

    async def _paced(self, endpoint: Json) -> None:
        """RateLimiter with one accumulated token: calls spaced 60 / requests_per_minute seconds apart."""
        if not self.release.paces:
            return
        rpm = endpoint["service_settings"].get("rate_limit", {}).get("requests_per_minute")
        interval = 60.0 / (rpm or _DEFAULT_RPM[endpoint["service"]])
        now = time.monotonic()
        slot = max(now, self._next_slot.get(endpoint["inference_id"], now))
        self._next_slot[endpoint["inference_id"]] = slot + interval
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _once(self, endpoint: Json, inputs: list[str], input_type: str) -> list[Any]:
        url, headers, body = service_request(endpoint, inputs, input_type)
        attempt = Attempt(endpoint["inference_id"], inputs, time.monotonic())
        self.attempts.append(attempt)
        if self._session is None:
            self._loop = asyncio.get_running_loop()
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20))  # max_connections
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                attempt.status, raw = response.status, await response.read()
        except aiohttp.ClientError as exc:  # an IOException: always retried
            raise ServiceFailure(f"Failed to send request [{url}]: {exc}", True) from None
        if attempt.status != 200:
            raise self._refusal(endpoint, attempt.status, raw)
        try:
            return parse(endpoint, orjson.loads(raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise ServiceFailure(
                f"Failed to parse the response for [{endpoint['inference_id']}]: {exc}", False
            ) from None

    def _refusal(self, endpoint: Json, status: int, raw: bytes) -> ServiceFailure:
        """BaseResponseHandler's message; the REST status is the service's below 500, else 400."""
        if status == 429:
            reason = "Received a rate limit status code"
        elif status >= 500:
            reason = "Received a server error status code"
        else:
            reason = "Received an unsuccessful status code"
        message = (
            f"{reason} for request from inference entity id [{endpoint['inference_id']}] status [{status}]. "
            f"Error message: [{raw[:500].decode(errors='replace')}]"
        )
        return ServiceFailure(message, status in _RETRIED[endpoint["service"]], status if status < 500 else 400)
