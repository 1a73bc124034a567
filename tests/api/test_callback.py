"""The callback routes, called the way Elasticsearch's inference services call them, read the way their parsers
read the answers (`tests.support.jsonpath`).

One node serves four deployments (dense, sparse, NER, classification) and is connected to the recording cluster
double, so every `_start` also registers an endpoint the double validates by calling back. The custom requests
replayed here are rendered from those registered endpoints, as Elasticsearch renders them.
"""

import base64
import json
import urllib.error
import urllib.request
import warnings

import numpy as np
import pytest

from sidecar.importer.trace import TracedModel
from tests.support.deploy import error_of, infer, start, uploaded
from tests.support.es_cluster_double import EsClusterDouble, custom_request
from tests.support.jsonpath import extract
from tests.support.node import NodeProcess

SECRET = "s3cret-for-callbacks"
BEARER = {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"}
TEXTS = ["john smith lives in london", "the film was wonderful"]
QUEUE = 8
TASK_TYPES = {
    "cb-dense": "text_embedding",
    "cb-sparse": "sparse_embedding",
    "cb-ner": "completion",
    "cb-sentiment": "completion",
    "cb-e5": "text_embedding",
}
PREFIXES = {"ingest": "passage: ", "search": "query: "}  # an E5 model's prefix_strings


def post(url, body, headers=BEARER, method="POST"):
    """POST as the cluster's HTTP client does; returns the status and the parsed JSON answer."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def traced_expansion(tmp_path_factory):
    """A tiny BERT masked LM traced as eland traces text_expansion models: logits `[batch, length, vocabulary]`."""
    import torch
    from transformers import AutoModelForMaskedLM

    from sidecar.importer.trace import BERT, Positional, TracedModel
    from tests.support.models import MAX_LENGTH, tiny_model, uploaded_vocabulary

    root = tmp_path_factory.mktemp("expansion")
    directory = tiny_model(root / "hf", "bert", "text_expansion")
    module = Positional(AutoModelForMaskedLM.from_pretrained(directory, return_dict=False), BERT.inputs).eval()
    ids = torch.tensor([[2, 60, 61, 3], [2, 62, 3, 0]])
    example = (ids, (ids != 0).long(), torch.zeros_like(ids), torch.arange(4).expand_as(ids))
    definition = root / "traced_pytorch_model.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch and transformers warn on every trace
        torch.jit.save(torch.jit.freeze(torch.jit.trace(module, example, check_trace=False)), str(definition))
    tokenization = {"bert": {"max_sequence_length": MAX_LENGTH, "do_lower_case": True}}
    config = {
        "description": "tiny text expansion",
        "inference_config": {"text_expansion": {"tokenization": tokenization}},
        "input": {"field_names": ["text_field"]},
        "model_type": "pytorch",
    }
    return TracedModel("cb-sparse", definition, config, uploaded_vocabulary(directory))


@pytest.fixture(scope="module")
def cluster():
    with EsClusterDouble() as double:
        yield double


@pytest.fixture(scope="module")
def node(tmp_path_factory, cluster):
    args = ("--es-url", cluster.url, "--callback-secret", SECRET, "--es-version", "8.0.0")  # the seed's `_start` body
    process = NodeProcess(tmp_path_factory.mktemp("callback") / "data", *args).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node):
    return node.client(retry_on_status=(), max_retries=0)


@pytest.fixture(scope="module")
def deployed(node, es, traced_minilm, traced_ner, traced_classifier, traced_expansion):
    """Model id -> the `_start` answer; MiniLM with a small queue, to see it overflow; MiniLM again with E5's
    prefix strings."""
    e5_config = traced_minilm.config | {"prefix_strings": PREFIXES}
    e5 = TracedModel("cb-e5", traced_minilm.definition, e5_config, traced_minilm.vocabulary)
    models = {"cb-dense": (traced_minilm, {"queue_capacity": QUEUE}), "cb-sparse": (traced_expansion, {})}
    models |= {"cb-ner": (traced_ner, {}), "cb-sentiment": (traced_classifier, {}), "cb-e5": (e5, {})}
    return {
        model_id: start(es, uploaded(node.url, traced, model_id), **params)
        for model_id, (traced, params) in models.items()
    }


def custom(cluster, node, model_id, texts, input_type="internal_ingest"):
    """The call the registered custom endpoint makes for `texts` (an ingest pipeline's, unless told otherwise)."""
    endpoint = cluster.state.endpoints[model_id]
    url, headers, body = custom_request(endpoint["service_settings"], texts, endpoint["task_type"], input_type)
    assert url == f"{node.url}/_sidecar/custom/{model_id}"
    return post(url, body, headers)


def test_every_deployment_gets_an_endpoint_that_validates(cluster, deployed):
    for model_id, answer in deployed.items():
        assert "reason" not in answer["allocation"]
        assert cluster.state.endpoints[model_id]["task_type"] == TASK_TYPES[model_id]
        [validation] = [v for v in cluster.state.validations if v["endpoint"] == model_id]
        assert validation["status"] == 200
        assert validation["body"] == (
            {"input": "how big"}
            if TASK_TYPES[model_id] == "completion"
            else {"input": ["how big"], "input_type": "ingest"}  # the validation call's InputType.INGEST
        )
        assert validation["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert cluster.state.endpoints["cb-dense"]["service_settings"]["dimensions"] == 384


def test_dense_vectors_are_the_models_scaled_to_unit_length(cluster, node, es, deployed):
    status, answer = custom(cluster, node, "cb-dense", TEXTS)
    assert status == 200
    vectors = np.array(extract(answer, "$.data[*].embedding"))
    expected = np.array([r["predicted_value"] for r in infer(es, "cb-dense", TEXTS)])
    assert vectors.shape == expected.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(vectors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-5)


def test_sparse_tokens_and_weights_line_up_with_infer(cluster, node, es, deployed):
    status, answer = custom(cluster, node, "cb-sparse", TEXTS)
    assert status == 200
    tokens = extract(answer, "$.data[*].embedding[*].token")
    weights = extract(answer, "$.data[*].embedding[*].weight")
    expected = [r["predicted_value"] for r in infer(es, "cb-sparse", TEXTS)]
    assert [dict(zip(t, w, strict=True)) for t, w in zip(tokens, weights, strict=True)] == expected
    assert all(expected)


@pytest.mark.parametrize("model_id", ["cb-ner", "cb-sentiment"])
def test_other_tasks_complete_with_elasticsearchs_result_json(cluster, node, es, deployed, model_id):
    status, answer = custom(cluster, node, model_id, TEXTS)  # completion sends the first input alone
    assert status == 200
    completion = extract(answer, "$.result")
    assert isinstance(completion, str)
    assert json.loads(completion) == infer(es, model_id, TEXTS[:1])[0]


def test_hugging_face_shapes(node, es, deployed):
    status, dense = post(f"{node.url}/_sidecar/hf/cb-dense", {"inputs": TEXTS})
    assert status == 200
    assert np.allclose(np.linalg.norm(np.array(dense), axis=1), 1.0, atol=1e-5)
    status, sparse = post(f"{node.url}/_sidecar/hf/cb-sparse", {"inputs": TEXTS})
    assert status == 200
    assert sparse == [r["predicted_value"] for r in infer(es, "cb-sparse", TEXTS)]


def test_openai_embeddings_in_floats_and_base64(node, deployed):
    status, floats = post(f"{node.url}/v1/embeddings", {"input": TEXTS, "model": "cb-dense"})
    assert status == 200
    assert [list(item) for item in floats["data"]] == [["object", "index", "embedding"]] * 2
    assert (floats["object"], floats["model"], [item["index"] for item in floats["data"]]) == (
        "list",
        "cb-dense",
        [0, 1],
    )
    vectors = np.array(extract(floats, "$.data[*].embedding"), dtype=np.float32)
    status, encoded = post(
        f"{node.url}/v1/embeddings", {"input": TEXTS, "model": "cb-dense", "encoding_format": "base64"}
    )
    decoded = [np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4") for item in encoded["data"]]
    assert np.array_equal(np.array(decoded), vectors)
    status, single = post(f"{node.url}/v1/embeddings", {"input": TEXTS[0], "model": "cb-dense"})
    assert np.allclose(single["data"][0]["embedding"], vectors[0], atol=1e-6)


def test_only_the_shared_secret_gets_in(node, deployed):
    for headers in ({"Content-Type": "application/json"}, {**BEARER, "Authorization": "Bearer wrong"}):
        status, answer = post(f"{node.url}/_sidecar/custom/cb-dense", {"input": TEXTS}, headers)
        assert (status, answer["error"]["type"]) == (401, "security_exception")
        assert post(f"{node.url}/_sidecar/hf/cb-dense", {"inputs": TEXTS}, headers) == (
            401,
            {"error": answer["error"]["reason"]},
        )
        status, answer = post(f"{node.url}/v1/embeddings", {"input": TEXTS, "model": "cb-dense"}, headers)
        assert status == 401 and isinstance(answer["error"]["message"], str)


def test_routes_refuse_models_of_other_tasks(node, deployed):
    status, answer = post(f"{node.url}/_sidecar/hf/cb-ner", {"inputs": TEXTS})
    assert (status, answer) == (
        400,
        {"error": "model [cb-ner] is a [ner] model; /_sidecar/hf serves [text_embedding, text_expansion] models"},
    )
    status, answer = post(f"{node.url}/v1/embeddings", {"input": TEXTS, "model": "cb-ner"})
    assert status == 400 and answer["error"]["message"].startswith("model [cb-ner] is a [ner] model")
    status, answer = post(f"{node.url}/_sidecar/custom/cb-dense", {"input": [1, 2]})
    assert (status, answer["error"]["reason"]) == (400, "[input] must be a string or a non-empty array of strings")


def test_callbacks_past_queue_capacity_wait_instead_of_429(node, es, deployed):
    """The cluster gives a document up after a few 429s: a callback waits for a worker where `_infer` is refused."""
    too_many = [f"text {i}" for i in range(QUEUE + 1)]
    assert error_of(lambda: infer(es, "cb-dense", too_many)) == (
        429,
        "es_rejected_execution_exception",
        "inference process queue is full. Unable to execute command",
    )
    before = status(es)["cb-dense"]
    for route, body in (
        ("/_sidecar/custom/cb-dense", {"input": too_many}),
        ("/_sidecar/hf/cb-dense", {"inputs": too_many}),
        ("/v1/embeddings", {"input": too_many, "model": "cb-dense"}),
    ):
        answer_status, answer = post(f"{node.url}{route}", body)
        assert answer_status == 200 and len(answer["data"] if isinstance(answer, dict) else answer) == QUEUE + 1
    after = status(es)["cb-dense"]
    assert after["waited_beyond_capacity_count"] - before["waited_beyond_capacity_count"] == 3
    assert after["rejected_execution_count"] == before["rejected_execution_count"]
    assert after["queue_capacity"] == QUEUE


def status(es):
    return es.perform_request("GET", "/_sidecar/status").body["deployments"]


def unit(vectors):
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_ingest_and_search_callbacks_get_their_prefix_strings(cluster, node, es, deployed):
    """What the registered endpoint renders for each input type reaches the model with the model's prefix: the
    vectors are those `_infer` (which applies none) gives for the prefixed texts, and they differ."""
    expected = {
        kind: unit([r["predicted_value"] for r in infer(es, "cb-e5", [prefix + t for t in TEXTS])])
        for kind, prefix in PREFIXES.items()
    }
    bare = unit([r["predicted_value"] for r in infer(es, "cb-e5", TEXTS)])
    assert not np.allclose(expected["ingest"], expected["search"], atol=1e-3)
    assert not np.allclose(expected["ingest"], bare, atol=1e-3)
    for input_type, kind in (("ingest", "ingest"), ("search", "search"), ("internal_ingest", "ingest")):
        answer_status, answer = custom(cluster, node, "cb-e5", TEXTS, input_type)
        assert answer_status == 200
        assert np.allclose(extract(answer, "$.data[*].embedding"), expected[kind], atol=1e-5), input_type
    # hugging_face and openai requests carry no input type: ingest, what nearly every callback is
    assert np.allclose(post(f"{node.url}/_sidecar/hf/cb-e5", {"inputs": TEXTS})[1], expected["ingest"], atol=1e-5)
    answer = post(f"{node.url}/v1/embeddings", {"input": TEXTS, "model": "cb-e5"})[1]
    assert np.allclose(extract(answer, "$.data[*].embedding"), expected["ingest"], atol=1e-5)


def test_an_unknown_input_type_is_refused(node, deployed):
    answer_status, answer = post(f"{node.url}/_sidecar/custom/cb-e5", {"input": TEXTS, "input_type": "query"})
    assert (answer_status, answer["error"]["reason"]) == (400, "[input_type] must be [ingest] or [search], got [query]")


@pytest.mark.parametrize(
    ("service", "task_type", "route", "settings", "sent"),
    [
        (
            "openai",
            "text_embedding",
            "/v1/embeddings",
            {"model_id": "cb-dense"},
            {"input": ["how big"], "model": "cb-dense"},
        ),
        ("hugging_face", "sparse_embedding", "/_sidecar/hf/cb-sparse", {}, {"inputs": ["how big"]}),
    ],
)
def test_endpoints_made_by_hand_for_the_other_services_validate(
    cluster, node, deployed, service, task_type, route, settings, sent
):
    """What a person on an 8.12-9.0 cluster would create: the cluster's own request shapes reach the models."""
    body = {"service": service, "service_settings": {"url": f"{node.url}{route}", "api_key": SECRET, **settings}}
    status, _ = post(
        f"{cluster.url}/_inference/{task_type}/by-hand-{service}", body, {"Content-Type": "application/json"}, "PUT"
    )
    assert status == 200
    [validation] = [v for v in cluster.state.validations if v["endpoint"] == f"by-hand-{service}"]
    assert (validation["status"], validation["body"]) == (200, sent)
    assert validation["parsed"][0]
