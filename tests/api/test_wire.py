"""Elasticsearch's wire conventions, checked through a real node and the official client."""

import orjson
import pytest
import urllib3
from elasticsearch import BadRequestError

from sidecar.api.wire import filter_path
from tests.api.conftest import MAX_BODY


def raw(node, method, path, body=None, headers=None):
    http = urllib3.PoolManager()
    return http.request(method, node.url + path, body=body, headers=headers or {})


def test_ping_and_info_work_with_the_official_client(es, node):
    assert es.ping()
    info = es.info()
    assert info["name"] == "node-1"
    assert info["version"]["number"] == "9.2.0"
    assert info["tagline"] == "You Know, for Search"
    assert len(info["cluster_uuid"]) == 22
    assert list(info) == ["name", "cluster_name", "cluster_uuid", "version", "tagline"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/"), ("HEAD", "/"), ("GET", "/_ml/trained_models/nope"), ("GET", "/nowhere"), ("DELETE", "/")],
)
def test_every_response_carries_the_product_header(node, method, path):
    assert raw(node, method, path).headers["X-elastic-product"] == "Elasticsearch"


def test_unknown_parameter_is_named_with_a_suggestion(es):
    with pytest.raises(BadRequestError) as caught:
        es.perform_request("GET", "/_ml/trained_models", params={"prety": "true"})
    assert caught.value.body == {
        "error": {
            "root_cause": [
                {
                    "type": "illegal_argument_exception",
                    "reason": "request [/_ml/trained_models] contains unrecognized parameter: [prety] -> did you mean [pretty]?",
                }
            ],
            "type": "illegal_argument_exception",
            "reason": "request [/_ml/trained_models] contains unrecognized parameter: [prety] -> did you mean [pretty]?",
        },
        "status": 400,
    }


def test_several_unknown_parameters_are_sorted(node):
    body = orjson.loads(raw(node, "GET", "/_ml/trained_models?zzz=1&aaa=2").data)
    assert body["error"]["reason"] == "request [/_ml/trained_models] contains unrecognized parameters: [aaa], [zzz]"


def test_non_numeric_number_is_elasticsearchs_400(node):
    response = raw(node, "GET", "/_ml/trained_models?size=ten")
    body = orjson.loads(response.data)
    assert response.status == 400
    assert body["error"]["type"] == "illegal_argument_exception"
    assert body["error"]["reason"] == "Failed to parse int parameter [size] with value [ten]"
    assert body["error"]["caused_by"] == {"type": "number_format_exception", "reason": 'For input string: "ten"'}


def test_pretty_prints_like_elasticsearch(node):
    text = raw(node, "GET", "/?pretty").data.decode()
    assert text.startswith('{\n  "name" : "node-1",\n')
    assert text.endswith("}\n")


def test_filter_path_keeps_only_named_leaves(node):
    body = orjson.loads(raw(node, "GET", "/?filter_path=version.number,tagline").data)
    assert body == {"version": {"number": "9.2.0"}, "tagline": "You Know, for Search"}


def test_filter_path_is_not_applied_to_errors(node):
    body = orjson.loads(raw(node, "GET", "/_ml/trained_models/nope?filter_path=status").data)
    assert body["error"]["type"] == "resource_not_found_exception"


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["a.b"], {"a": {"b": 1}}),
        (["**.c"], {"a": {"c": 2}, "d": [{"c": 3}]}),
        (["-a"], {"d": [{"c": 3, "e": 4}]}),
        (["d.e"], {"d": [{"e": 4}]}),
        (["nothing"], {}),
        (["a.*"], {"a": {"b": 1, "c": 2}}),
    ],
)
def test_filter_path_rules(filters, expected):
    data = {"a": {"b": 1, "c": 2}, "d": [{"c": 3, "e": 4}]}
    assert filter_path(data, filters) == expected


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/vnd.elasticsearch+json; compatible-with=8", "application/vnd.elasticsearch+json; compatible-with=9"],
)
def test_accepts_elasticsearch_media_types(node, content_type):
    response = raw(node, "PUT", "/_ml/trained_models/media-check", body=b'{"model_type": "pytorch"}', headers={"Content-Type": content_type})
    # the body is incomplete, so validation answers; the point is that the media type was accepted
    assert response.status == 400
    assert orjson.loads(response.data)["error"]["type"] == "action_request_validation_exception"


def test_rejects_other_media_types(node):
    response = raw(node, "PUT", "/_ml/trained_models/m", body=b"x", headers={"Content-Type": "text/plain"})
    assert response.status == 406
    assert orjson.loads(response.data) == {"error": "Content-Type header [text/plain] is not supported", "status": 406}


def test_malformed_json_is_a_400(node):
    response = raw(node, "PUT", "/_ml/trained_models/m", body=b'{"model_type": ', headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert orjson.loads(response.data)["error"]["type"] == "x_content_parse_exception"


def test_unknown_route_and_wrong_method(node):
    assert orjson.loads(raw(node, "GET", "/nowhere").data) == {"error": "no handler found for uri [/nowhere] and method [GET]", "status": 400}
    assert raw(node, "DELETE", "/").status == 405


def test_oversized_body_is_refused_before_it_is_read(node):
    response = raw(node, "PUT", "/_ml/trained_models/m", body=b"{" + b" " * MAX_BODY + b"}", headers={"Content-Type": "application/json"})
    assert response.status == 413


def test_status_route_describes_the_node(es):
    status = es.perform_request("GET", "/_sidecar/status").body
    assert len(status["node_id"]) == 22
    assert status["name"] == "node-1"
    assert status["usable_cores"] >= 1
    assert status["deployments"] == {}

