"""`GET /metrics`: Prometheus' text format read with Prometheus' own parser, open without credentials, and series
that move with what the node does (inference, refusals, timeouts, unknown routes)."""

from __future__ import annotations

import re
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import ApiError
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.texts import LONG
from sidecar.settings import Settings
from tests.support.deploy import error_of, infer, start, uploaded

INFER_ROUTE = "/_ml/trained_models/{model_id}/_infer"
QUEUE_CAPACITY = 40
README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
DOCUMENTED = set(
    re.findall(r"`((?:sidecar|process|python)_[a-z_]+)", README.split("**Metrics.**")[1].split("**Logs.**")[0])
)
_SUFFIXES = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}


class Scrape:
    """One scrape, as Prometheus reads it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = [sample for family in self.families.values() for sample in family.samples]
        # each family's names: its own, and its series' (a family is on the page before it has samples)
        self.names = {
            family.name: {family.name} | {family.name + suffix for suffix in _SUFFIXES.get(family.type, [])}
            for family in self.families.values()
        }

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a series not there yet (a counter that has not moved)."""
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) <= 1, (name, labels)
        return found[0] if found else 0.0


def scrape(node: Any, accept: str | None = None) -> tuple[str, Scrape]:
    """Scraped as Prometheus does: plain HTTP, no credentials."""
    request = urllib.request.Request(f"{node.url}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return response.headers["Content-Type"], Scrape(response.read().decode())


def requests(page: Scrape, route: str, status: int, method: str = "POST") -> float:
    return page.value("sidecar_http_requests_total", route=route, method=method, status=str(status))


@pytest.fixture(scope="module")
def es(node: Any) -> Any:
    """A client that tries once: each refusal is one request."""
    return node.client(retry_on_status=(), max_retries=0)


@pytest.fixture(scope="module")
def model(node: Any, es: Any, traced_minilm: Any) -> str:
    model_id = uploaded(node.url, traced_minilm, "metrics-minilm")
    start(es, model_id, queue_capacity=QUEUE_CAPACITY, wait_for="started", timeout="3m")
    return model_id


def test_the_page_is_prometheus_text_with_the_series_the_readme_names(node: Any, model: str) -> None:
    content_type, page = scrape(node)
    assert content_type.startswith("text/plain; version=0.0.4")
    assert len(DOCUMENTED) > 20 and sorted(DOCUMENTED - set().union(*page.names.values())) == []
    undocumented = [
        name for name, names in page.names.items() if name.startswith("sidecar_") and not names & DOCUMENTED
    ]
    assert undocumented == []
    assert page.value("process_resident_memory_bytes") > 10 * 1024 * 1024
    assert page.value("sidecar_in_flight_requests_limit_bytes") == Settings().max_in_flight_bytes


def test_openmetrics_is_given_to_a_scraper_that_asks_for_it(node: Any, model: str) -> None:
    content_type, page = scrape(node, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert "sidecar_http_requests" in page.families


def test_a_deployment_shows_its_queue_allocations_and_workers(node: Any, model: str) -> None:
    _, page = scrape(node)
    assert page.value("sidecar_inference_queue_capacity", deployment=model) == QUEUE_CAPACITY
    assert page.value("sidecar_inference_queue_depth", deployment=model) == 0
    assert page.value("sidecar_allocations", deployment=model) == 1
    assert page.value("sidecar_allocations_target", deployment=model) == 1
    assert page.value("sidecar_deployment", deployment=model, model_id=model) == 1
    assert page.value("sidecar_worker_resident_memory_bytes", deployment=model, worker="0") > 50 * 1024 * 1024
    # no cache yet: its series exist and read 0
    assert "sidecar_inference_cache_hits_total" in page.text
    assert page.value("sidecar_inference_cache_hits_total", deployment=model) == 0


def test_an_inference_moves_requests_documents_latency_and_batch_sizes(node: Any, es: Any, model: str) -> None:
    _, before = scrape(node)
    infer(es, model, ["one text", "another text", "a third"])
    _, after = scrape(node)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert requests(after, INFER_ROUTE, 200) - requests(before, INFER_ROUTE, 200) == 1
    assert moved("sidecar_inference_documents_total", deployment=model) == 3
    assert moved("sidecar_inference_batch_size_count", deployment=model) == 1
    assert moved("sidecar_inference_batch_size_sum", deployment=model) == 3
    assert moved("sidecar_inference_duration_seconds_count", deployment=model) == 1
    assert moved("sidecar_inference_duration_seconds_sum", deployment=model) > 0
    assert moved("sidecar_inference_queue_wait_seconds_count", deployment=model) == 1
    assert moved("sidecar_inference_duration_seconds_bucket", deployment=model, le="+Inf") == 1


def test_an_unknown_model_and_an_unknown_path_are_counted_by_template_never_by_raw_path(node: Any, es: Any) -> None:
    _, before = scrape(node)
    assert error_of(lambda: infer(es, "no-such-model-xyz", ["text"]))[0] == 404
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{node.url}/no-such-path-xyz", timeout=30)
    assert caught.value.code == 400  # Elasticsearch's "no handler found for uri"
    _, after = scrape(node)
    assert requests(after, INFER_ROUTE, 404) - requests(before, INFER_ROUTE, 404) == 1
    unmatched = requests(after, "unmatched", 400, "GET") - requests(before, "unmatched", 400, "GET")
    assert unmatched == 1
    assert "no-such-model-xyz" not in after.text and "no-such-path-xyz" not in after.text


def test_a_full_queue_counts_a_rejection_and_a_429(node: Any, es: Any, model: str) -> None:
    _, before = scrape(node)
    assert error_of(lambda: infer(es, model, ["x"] * (QUEUE_CAPACITY + 1)))[0] == 429
    _, after = scrape(node)
    assert requests(after, INFER_ROUTE, 429) - requests(before, INFER_ROUTE, 429) == 1
    rejections = "sidecar_inference_rejections_total"
    assert after.value(rejections, deployment=model) - before.value(rejections, deployment=model) == 1


def test_a_timeout_counts_a_timeout_and_a_408(node: Any, es: Any, model: str) -> None:
    _, before = scrape(node)
    blocker = threading.Thread(target=infer, args=(es, model, LONG * 8))
    blocker.start()
    try:
        with pytest.raises(ApiError) as caught:
            es.perform_request(
                "POST", f"/_ml/trained_models/{model}/_infer", params={"timeout": "50ms"},
                body={"docs": [{"text_field": "late"}]}, headers={"content-type": "application/json"},
            )  # fmt: skip
    finally:
        blocker.join()
    assert caught.value.meta.status == 408
    _, after = scrape(node)
    assert requests(after, INFER_ROUTE, 408) - requests(before, INFER_ROUTE, 408) == 1
    timeouts = "sidecar_inference_timeouts_total"
    assert after.value(timeouts, deployment=model) - before.value(timeouts, deployment=model) == 1


def test_a_head_refused_before_routing_is_counted(node: Any) -> None:
    name = "sidecar_http_refused_heads_total"
    _, before = scrape(node)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{node.url}/{'x' * 5000}", timeout=30)
    assert caught.value.code == 400
    _, after = scrape(node)
    line = "too_long_http_line_exception"
    assert after.value(name, error_type=line) - before.value(name, error_type=line) == 1
    assert "x" * 100 not in after.text
