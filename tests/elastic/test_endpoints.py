"""What a cluster of each version and license can take, and the endpoint bodies it gets."""

import json

import pytest

from sidecar.elastic.endpoints import endpoint_body, endpoint_task, force_delete_params
from sidecar.elastic.link import with_reason
from sidecar.elastic.probe import ClusterInfo, capability, parse_version
from sidecar.workers.cores import usable_cores
from tests.support.es_cluster_double import custom_request


def info(version, license_type="trial", status="active"):
    service, reason = capability(parse_version(version), license_type, status)
    return ClusterInfo(version, license_type, status, True, service, reason)


@pytest.mark.parametrize(
    ("version", "license_type", "service"),
    [
        ("8.12.0", "basic", "hugging_face"),  # no license check on inference endpoints before 8.18
        ("8.17.4", "trial", "hugging_face"),
        ("8.18.2", "enterprise", "hugging_face"),
        ("8.19.3", "trial", "custom"),
        ("9.0.3", "trial", "hugging_face"),  # 9.0 has no custom service
        ("9.1.0", "enterprise", "custom"),
        ("9.2.0-SNAPSHOT", "trial", "custom"),
    ],
)
def test_the_service_follows_the_version(version, license_type, service):
    assert info(version, license_type).service == service


@pytest.mark.parametrize(
    ("version", "license_type", "status", "reason"),
    [
        (
            "8.11.4",
            "trial",
            "active",
            "Elasticsearch [8.11.4] cannot call external models from ingest pipelines (8.12 or later needed)",
        ),
        (
            "8.18.0",
            "basic",
            "active",
            "inference endpoints need an enterprise or trial license; the cluster's license is [basic]",
        ),
        (
            "9.1.5",
            "platinum",
            "active",
            "inference endpoints need an enterprise or trial license; the cluster's license is [platinum]",
        ),
        ("9.1.5", "trial", "expired", "the cluster's [trial] license is [expired]"),
    ],
)
def test_clusters_that_cannot_take_endpoints_say_why(version, license_type, status, reason):
    cluster = info(version, license_type, status)
    assert (cluster.service, cluster.reason) == (None, reason)
    assert endpoint_task(cluster, "text_embedding") == (None, reason)


def test_task_types():
    custom, hugging_face = info("9.1.5"), info("9.0.3")
    assert endpoint_task(custom, "text_embedding") == ("text_embedding", None)
    assert endpoint_task(custom, "text_expansion") == ("sparse_embedding", None)
    assert endpoint_task(custom, "zero_shot_classification") == ("completion", None)
    assert endpoint_task(hugging_face, "text_expansion") == ("sparse_embedding", None)
    task, reason = endpoint_task(hugging_face, "ner")
    assert task is None and reason.startswith("Elasticsearch [9.0.3] has no [custom] inference service")


def test_hugging_face_bodies_leave_out_what_old_versions_refuse():
    old = endpoint_body(info("8.12.2"), "text_embedding", "m", "http://node:9700", "s", 32)
    assert old == {
        "service": "hugging_face",
        "service_settings": {"url": "http://node:9700/_sidecar/hf/m", "api_key": "s"},
    }
    assert force_delete_params(info("8.12.2")) == {}
    recent = endpoint_body(info("9.0.3"), "sparse_embedding", "m", "http://node:9700", "s", 32)
    assert recent["service_settings"]["rate_limit"] == {"requests_per_minute": 60_000 * len(usable_cores())}
    assert force_delete_params(info("9.0.3")) == {"force": "true"}


def test_custom_completion_has_no_batch_size_similarity_or_input_type():
    settings = endpoint_body(info("9.1.5"), "completion", "m", "http://node:9700", "s", 32)["service_settings"]
    assert settings["response"] == {"json_parser": {"completion_result": "$.result"}}
    assert settings["request"] == '{"input": ${input}}'  # CompletionParameters has no ${input_type}
    assert not {"batch_size", "similarity", "input_type"} & set(settings)


@pytest.mark.parametrize("task_type", ["text_embedding", "sparse_embedding"])
@pytest.mark.parametrize(
    ("input_type", "sent"),
    [
        ("internal_ingest", "ingest"),  # ingest pipelines and semantic_text: never a translation key, the default
        ("internal_search", "ingest"),  # semantic and knn queries: the same
        ("ingest", "ingest"),  # a direct _inference call with input_type
        ("search", "search"),
    ],
)
def test_custom_embeddings_carry_the_input_type(task_type, input_type, sent):
    settings = endpoint_body(info("9.1.5"), task_type, "m", "http://node:9700", "s", 32)["service_settings"]
    _, _, body = custom_request(settings, ["a", "b"], task_type, input_type)
    assert json.loads(body) == {"input": ["a", "b"], "input_type": sent}
    assert settings["rate_limit"] == {"requests_per_minute": 60_000 * len(usable_cores())}


def test_the_reason_sits_after_allocation_state():
    rendered = {
        "allocation": {"task_parameters": {}, "routing_table": {}, "allocation_state": "started", "start_time": "t"}
    }
    assert with_reason(rendered, None) is rendered
    assert list(with_reason(rendered, "why")["allocation"]) == [
        "task_parameters",
        "routing_table",
        "allocation_state",
        "reason",
        "start_time",
    ]


def test_the_reason_sits_after_assignment_state_from_8x():
    rendered = {
        "assignment": {"task_parameters": {}, "routing_table": {}, "assignment_state": "started", "start_time": "t"}
    }
    assert list(with_reason(rendered, "why")["assignment"]) == [
        "task_parameters",
        "routing_table",
        "assignment_state",
        "reason",
        "start_time",
    ]
