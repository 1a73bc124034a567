"""Upload a traced model through the trained-models HTTP API, in the order and shapes eland uses."""

from __future__ import annotations

import base64
import math
from typing import TYPE_CHECKING, Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError
from tqdm import tqdm

if TYPE_CHECKING:  # the trace module loads torch: a failed reachability check must not wait for it
    from sidecar.importer.trace import TracedModel

JSON_HEADERS = {"accept": "application/json", "content-type": "application/json"}
ALREADY_EXISTS = "trained model [{}] already exists; use --clear-previous to replace it"
NOT_ELASTICSEARCH = "{} answers, but not as Elasticsearch or a sidecar node"


class UploadError(Exception):
    """A failed upload, worded in one line for the command line."""


def check_node(url: str, model_id: str, *, clear_previous: bool = False, auth: dict[str, Any] | None = None) -> None:
    """Fail before minutes of tracing, not after them: the node answers as Elasticsearch, lets the caller in, and
    holds no model with this id unless it is to be replaced. Only the upload's own privileges are needed (GET /
    would need `monitor`, which an uploader with `manage_ml` lacks)."""
    try:
        es = Elasticsearch(url, request_timeout=10, max_retries=0, **(auth or {}))
        found = es.options(ignore_status=404).ml.get_trained_models(model_id=model_id)
    except UnsupportedProductError:  # the client's check of a success
        raise UploadError(NOT_ELASTICSEARCH.format(url)) from None
    except ApiError as error:
        raise UploadError(_describe(error)) from None
    except ValueError as error:  # the client's word for a URL it cannot parse
        raise UploadError(f"cannot reach {url}: {error}") from None
    except TransportError as error:
        raise UploadError(f"cannot reach {url}: {error.message}") from None
    if found.meta.status == 404 and not isinstance(found.body, dict):  # Elasticsearch's 404 is an error object
        raise UploadError(NOT_ELASTICSEARCH.format(url))
    if found.meta.status == 200 and not clear_previous:
        raise UploadError(ALREADY_EXISTS.format(model_id))


def upload(
    url: str,
    traced: TracedModel,
    *,
    clear_previous: bool = False,
    start: bool = False,
    chunk_size: int = 1 << 20,
    progress: bool = True,
    auth: dict[str, Any] | None = None,
) -> None:
    """Config, definition parts, vocabulary, then optionally start the deployment; `auth`: the client's
    credential options (`api_key` or `basic_auth`), for a node that checks callers against its cluster."""
    es = Elasticsearch(url, request_timeout=300, **(auth or {}))
    try:
        _make_room(es, traced.model_id, clear_previous)
        es.ml.put_trained_model(model_id=traced.model_id, **traced.config)
        _put_definition(es, traced, chunk_size, progress)
        es.perform_request(
            "PUT", f"/_ml/trained_models/{traced.model_id}/vocabulary", body=traced.vocabulary, headers=JSON_HEADERS
        )
        if start:
            es.options(request_timeout=60).ml.start_trained_model_deployment(
                model_id=traced.model_id, timeout="60s", wait_for="started"
            )
    except ApiError as error:
        raise UploadError(_describe(error)) from None
    except TransportError as error:
        raise UploadError(f"cannot reach {url}: {error.message}") from None


def _make_room(es: Elasticsearch, model_id: str, clear_previous: bool) -> None:
    """An existing model is an error unless asked to replace it: stop its deployment, then delete it."""
    if es.options(ignore_status=404).ml.get_trained_models(model_id=model_id).meta.status != 200:
        return
    if not clear_previous:
        raise UploadError(ALREADY_EXISTS.format(model_id))
    es.ml.stop_trained_model_deployment(model_id=model_id)
    es.options(ignore_status=404).ml.delete_trained_model(model_id=model_id)


def _put_definition(es: Elasticsearch, traced: TracedModel, chunk_size: int, progress: bool) -> None:
    """The TorchScript file as base64 parts numbered from 0; the length is that of the raw file."""
    total_length = traced.definition.stat().st_size
    total_parts = math.ceil(total_length / chunk_size)
    with (
        traced.definition.open("rb") as file,
        tqdm(total=total_length, unit="B", unit_scale=True, desc=traced.model_id, disable=not progress) as bar,
    ):
        for part in range(total_parts):
            chunk = file.read(chunk_size)
            es.ml.put_trained_model_definition_part(
                model_id=traced.model_id,
                part=part,
                definition=base64.b64encode(chunk).decode(),
                total_definition_length=total_length,
                total_parts=total_parts,
            )
            bar.update(len(chunk))


def _describe(error: ApiError) -> str:
    """`type [status]: reason` from an Elasticsearch error body, else the client's own summary."""
    body: Any = error.body
    details = body.get("error") if isinstance(body, dict) else None
    if isinstance(details, dict) and "reason" in details:
        return f"{details.get('type', 'error')} [{error.meta.status}]: {details['reason']}"
    return str(error)
