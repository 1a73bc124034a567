"""The cluster double answers as each release of Elasticsearch does: what the node's code and tests rely on, checked
release by release against a stand-in inference service (no node), so that a double that drifted fails here.

Runs against every release in es_release.VERSIONS (each test takes well under a second, retry tests a few).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import ApiError, Elasticsearch
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sidecar.elastic.client import COMPATIBLE_8
from tests.support.es_client import client
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.es_inference import RetrySettings
from tests.support.es_release import VERSIONS, Release
from tests.support.loopback import LoopbackServer

VECTOR = [0.6, 0.8]
QUICK_RETRIES = RetrySettings(initial_delay=0.02, max_delay_bound=0.05, timeout=1.0)  # as an operator may set them


class Service(LoopbackServer):
    """An inference service that answers `statuses` in turn (the last one from then on), with a vector on 200."""

    def __init__(self) -> None:
        self.statuses = [200]
        self.calls: list[Any] = []
        super().__init__(Starlette(routes=[Route("/embed", self._answer, methods=["POST"])]))

    async def _answer(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.calls.append(body)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if status != 200:
            return JSONResponse({"error": "busy"}, status)
        inputs = body.get("input", body.get("inputs"))
        if "inputs" in body:  # hugging_face
            return JSONResponse([VECTOR for _ in inputs])
        return JSONResponse({"data": [{"embedding": VECTOR} for _ in inputs]})


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with Service() as running:
        yield running


@pytest.fixture(params=VERSIONS)
def double(request: pytest.FixtureRequest) -> Iterator[EsClusterDouble]:
    with EsClusterDouble(version=request.param, retry=QUICK_RETRIES) as running:
        yield running


def es(double: EsClusterDouble) -> Elasticsearch:
    return client(double.url)


def error_of(call: Any) -> tuple[int, Any]:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.meta.status, caught.value.body["error"]


def endpoint_body(release: Release, url: str, service: str | None = None) -> dict[str, Any]:
    service = service or ("custom" if "custom" in release.services else "hugging_face")
    if service == "custom":
        settings = {
            "url": url,
            "request": '{"input": ${input}}',
            "response": {"json_parser": {"text_embeddings": "$.data[*].embedding"}},
        }
    else:
        settings = {"url": url, "api_key": "key"}
    return {"service": service, "service_settings": settings}


def put_endpoint(double: EsClusterDouble, service: Service, endpoint_id: str = "e") -> Any:
    body = endpoint_body(double.release, f"{service.url}/embed")
    return es(double).perform_request(
        "PUT", f"/_inference/text_embedding/{endpoint_id}", body=body, headers={"content-type": "application/json"}
    )


def test_8x_refuses_the_9x_clients_media_type(double):
    typed = Elasticsearch(double.url)  # the 9.x client as it comes: compatible-with=9
    if double.release.major == 9:
        assert typed.info()["version"]["number"] == double.state.version
        return
    status, error = error_of(typed.info)
    assert (status, error["type"]) == (400, "media_type_header_exception")
    assert error["caused_by"]["reason"].startswith("Accept version must be either version 8 or 7, but found 9.")
    headers = {"accept": COMPATIBLE_8}
    assert typed.perform_request("GET", "/", headers=headers)["version"]["number"] == double.state.version


def test_get_by_id_alone_from_8_13(double):
    status, error = error_of(lambda: es(double).perform_request("GET", "/_inference/missing"))
    if double.release.one_segment_get:
        assert (status, error["type"]) == (404, "resource_not_found_exception")
    else:
        assert (status, error) == (400, "no handler found for uri [/_inference/missing] and method [GET]")


def test_endpoints_are_listed_in_the_releases_shape(double, service):
    put_endpoint(double, service)
    listed = es(double).perform_request("GET", "/_inference/_all").body
    key, id_key = ("endpoints", "inference_id") if double.release.since(8, 14) else ("models", "model_id")
    [endpoint] = listed[key]
    assert endpoint[id_key] == "e" and endpoint["service_settings"]["dimensions"] == 2
    assert "api_key" not in endpoint["service_settings"]


def test_the_license_is_checked_from_8_18(double, service):
    double.state.license_type = "basic"
    if not double.release.checks_license:
        assert put_endpoint(double, service).body["service"] in ("custom", "hugging_face")
        return
    assert error_of(lambda: put_endpoint(double, service)) == (
        403,
        {
            "root_cause": [
                {"type": "security_exception", "reason": "current license is non-compliant for [inference]"}
            ],
            "type": "security_exception",
            "reason": "current license is non-compliant for [inference]",
        },
    )


def test_custom_exists_in_8_19_and_from_9_1(double, service):
    body = endpoint_body(double.release, f"{service.url}/embed", "custom")
    put = lambda: es(double).perform_request(  # noqa: E731
        "PUT", "/_inference/text_embedding/c", body=body, headers={"content-type": "application/json"}
    )
    if double.state.version.startswith(("8.19", "9.1", "9.2")):
        assert put().body["service"] == "custom"
    else:
        assert error_of(put)[1]["reason"] == "Unknown service [custom]"


def test_a_failed_validation_call_fails_the_put_and_stores_nothing(double, service):
    service.statuses = [400]
    status, error = error_of(lambda: put_endpoint(double, service, "refused"))
    service.statuses = [200]
    assert status == 400
    assert error["reason"] == (
        "Could not complete inference endpoint creation as validation call to service threw an exception."
    )
    assert "refused" not in double.state.endpoints


def test_referenced_endpoints_are_kept_without_force_from_8_15(double, service):
    put_endpoint(double, service)
    processor = {"inference": {"model_id": "e", "input_output": {"input_field": "a", "output_field": "ml.v"}}}
    es(double).ingest.put_pipeline(id="uses-e", processors=[processor])
    delete = lambda: es(double).perform_request("DELETE", "/_inference/text_embedding/e")  # noqa: E731
    if not double.release.delete_parameters:
        assert delete().body == {"acknowledged": True}
        status, error = error_of(
            lambda: es(double).perform_request("DELETE", "/_inference/text_embedding/x", params={"force": "true"})
        )
        assert (status, error["reason"]) == (
            400,
            "request [/_inference/text_embedding/x] contains unrecognized parameter: [force]",
        )
        return
    status, error = error_of(delete)
    assert (status, error["reason"]) == (
        409,
        "Inference endpoint e is referenced by pipelines and cannot be deleted. "
        "Use `force` to delete it anyway, or use `dry_run` to list the pipelines that reference it.",
    )
    forced = es(double).perform_request("DELETE", "/_inference/text_embedding/e", params={"force": "true"})
    assert forced.body == {"acknowledged": True, "pipelines": ["uses-e"]}


def test_a_write_to_a_missing_index_creates_it_with_dynamic_mappings(double):
    es(double).index(index="auto", id="1", document={"text": "x", "n": 1, "f": 0.5, "o": {"b": True}})
    mappings = es(double).indices.get(index="auto")["auto"]["mappings"]["properties"]
    assert mappings == {
        "f": {"type": "float"},
        "n": {"type": "long"},
        "o": {"properties": {"b": {"type": "boolean"}}},
        "text": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
    }


def ingest_one(double: EsClusterDouble) -> dict[str, Any]:
    """One document through a pipeline with the project's failure handling; its indexed source."""
    processor = {
        "inference": {
            "model_id": "e",
            "input_output": [{"input_field": "body", "output_field": "ml.v"}],
            "on_failure": [{"append": {"field": "_ingest_errors", "value": "{{{_ingest.on_failure_message}}}"}}],
        }
    }
    es(double).ingest.put_pipeline(id="embed", processors=[processor])
    es(double).index(index="docs", id="1", document={"body": "some text"}, pipeline="embed")
    return es(double).get(index="docs", id="1")["_source"]


def test_a_429_is_tried_three_times_in_all_from_8_15_and_until_the_timeout_before(double, service):
    put_endpoint(double, service)
    service.calls.clear()
    service.statuses = [429]
    try:
        source = ingest_one(double)
    finally:
        service.statuses = [200]
    [message] = source["_ingest_errors"]
    assert message.startswith("Received a rate limit status code for request from inference entity id [e] status [429]")
    if double.release.max_attempts is not None:
        assert len(service.calls) == 3
    else:
        assert len(service.calls) > 3  # RetryableAction: as many as QUICK_RETRIES' one second allows


def test_a_server_error_is_retried_only_where_the_service_says(double, service):
    put_endpoint(double, service)
    service.calls.clear()
    service.statuses = [503, 200]  # hugging_face retries a 503, custom does not (CustomResponseHandler)
    try:
        source = ingest_one(double)
    finally:
        service.statuses = [200]
    if double.state.endpoints["e"]["service"] == "custom":
        assert len(service.calls) == 1 and "ml" not in source
        assert source["_ingest_errors"][0].startswith("Received a server error status code")
    else:
        assert len(service.calls) == 2 and source["ml"] == {"v": VECTOR, "model_id": "e"}


def test_results_are_written_where_the_inference_processor_writes_them(double, service):
    put_endpoint(double, service)
    assert ingest_one(double) == {"body": "some text", "ml": {"v": VECTOR, "model_id": "e"}}
    assert service.calls[-1] in ({"input": ["some text"]}, {"inputs": ["some text"]})  # one call per document


def test_calls_are_paced_by_the_endpoints_rate_limit_from_8_15(double, service):
    body = endpoint_body(double.release, f"{service.url}/embed")
    if double.release.paces:
        body["service_settings"]["rate_limit"] = {"requests_per_minute": 600}  # one call each 0.1 s
    es(double).perform_request(
        "PUT", "/_inference/text_embedding/e", body=body, headers={"content-type": "application/json"}
    )
    processor = {"inference": {"model_id": "e", "input_output": [{"input_field": "body", "output_field": "v"}]}}
    es(double).ingest.put_pipeline(id="embed", processors=[processor])
    before = len(double.state.sender.attempts)
    lines = [line for i in range(5) for line in ({"index": {"_index": "docs", "_id": str(i)}}, {"body": f"t{i}"})]
    assert not es(double).bulk(operations=lines, pipeline="embed")["errors"]
    times = sorted(attempt.at for attempt in double.state.sender.attempts[before:])
    assert len(times) == 5
    if double.release.paces:  # a lower bound: a slow machine only widens the gaps
        assert min(later - earlier for earlier, later in zip(times, times[1:], strict=False)) >= 0.09
