"""The node's Elasticsearch client, and the one way this package calls it.

`call` names `compatible-with=8` media types: Elasticsearch 8.x refuses the `compatible-with=9` that the 9.x client
sends by default, while 9.x serves version-8 compatible requests, so one wire format reaches 8.12 to 9.x.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import ApiError, AsyncElasticsearch

from sidecar.errors import EsError
from sidecar.settings import Settings

COMPATIBLE_8 = "application/vnd.elasticsearch+json; compatible-with=8"
_HEADERS = {"accept": COMPATIBLE_8, "content-type": COMPATIBLE_8}


def compatible_headers(authorization: str | None = None) -> dict[str, str]:
    """The headers of every request this package sends, sync or async; the typed client methods would send
    `compatible-with=9`, which 8.x refuses, so requests go through `perform_request` with these."""
    return {**_HEADERS, "authorization": authorization} if authorization else _HEADERS
_ENVELOPE_KEYS = ("type", "reason", "caused_by", "root_cause", "stack_trace", "suppressed")


def connect(settings: Settings) -> AsyncElasticsearch:
    """An async client for `--es-url` with the node's own credentials and CA bundle.

    Credentials: `--es-api-key` (the encoded key Elasticsearch returns), else `--es-user` and `--es-password`.
    The caller owns the client and closes it (`await client.close()`). Typed methods (`client.ingest...`) speak
    Elasticsearch 9; `call(client, ...)` speaks to 8.12+ and 9.x alike.
    """
    return AsyncElasticsearch(settings.es_url, request_timeout=30, **client_options(settings))


def client_options(settings: Settings) -> dict[str, Any]:
    """Credentials and CA bundle for a client of `--es-url`, sync or async."""
    if not settings.es_url:
        raise ValueError("no Elasticsearch cluster configured: pass --es-url")
    options: dict[str, Any] = {}
    if settings.es_api_key:
        options["api_key"] = settings.es_api_key
    elif settings.es_user:
        options["basic_auth"] = (settings.es_user, settings.es_password or "")
    if settings.es_ca_certs:
        options["ca_certs"] = str(settings.es_ca_certs)
    return options


async def call(
    es: AsyncElasticsearch,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, str] | None = None,
    authorization: str | None = None,
) -> Any:
    """`method path` in the version-8 compatible format; the cluster's refusals are raised as its own `EsError`.

    `authorization` replaces the node's credentials, to ask the cluster about a caller's.
    Unreachable clusters raise the transport's `ConnectionError` / `ConnectionTimeout`.
    """
    try:
        response = await es.perform_request(
            method, path, params=params, headers=compatible_headers(authorization), body=body
        )
    except ApiError as exc:
        raise cluster_error(exc) from exc
    return response.body


def cluster_error(exc: ApiError) -> EsError:
    """The cluster's error as it sent it: type, reason, cause and extra fields such as `header`."""
    error = exc.body.get("error") if isinstance(exc.body, dict) else None
    if isinstance(error, dict):
        return _from_body(exc.meta.status, error)
    return EsError(exc.meta.status, "exception", f"{exc.message}: {error or exc.body}")


def _from_body(status: int, error: dict[str, Any]) -> EsError:
    cause = error.get("caused_by")
    metadata = {key: value for key, value in error.items() if key not in _ENVELOPE_KEYS}
    return EsError(
        status,
        str(error.get("type", "exception")),
        str(error.get("reason") or ""),
        _from_body(status, cause) if isinstance(cause, dict) else None,
        metadata,
    )
