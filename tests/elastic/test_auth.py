"""Next to a cluster with security on, the REST API asks the cluster about each caller's own credentials and
answers with the cluster's 401 and 403 bodies; the callbacks take only the shared secret."""

import base64
import urllib.error
import urllib.request

import pytest
from elasticsearch import ApiError, Elasticsearch

from sidecar.cluster.forward import FORWARDED_HEADER
from sidecar.elastic.client import COMPATIBLE_8
from sidecar.elastic.guard import WWW_AUTHENTICATE
from tests.support.es_cluster_double import EsClusterDouble
from tests.support.es_release import REPRESENTATIVE
from tests.support.node import NodeProcess

SECRET = "callback-secret"
START = "cluster:admin/xpack/ml/trained_models/deployment/start"


@pytest.fixture(scope="module", params=REPRESENTATIVE)
def secured(request):
    with EsClusterDouble(security=True, version=request.param) as double:
        yield double


@pytest.fixture(scope="module")
def node(secured, tmp_path_factory):
    secured.add_user("sidecar-node", "node-password", ["all"])
    args = (
        "--es-url",
        secured.url,
        "--es-user",
        "sidecar-node",
        "--es-password",
        "node-password",
        "--callback-secret",
        SECRET,
    )
    process = NodeProcess(tmp_path_factory.mktemp("secured") / "data", *args).start()
    yield process
    process.stop()


def client(node, header=None):
    return Elasticsearch(
        node.url, headers={"authorization": header} if header else None, retry_on_status=(), max_retries=0
    )


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def error_of(call):
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value.meta.status, caught.value.body["error"]


def test_no_credentials_is_the_clusters_401(node):
    with pytest.raises(ApiError) as caught:
        client(node).perform_request("GET", "/_ml/trained_models", params={"size": "5"})
    reason = "missing authentication credentials for REST request [/_ml/trained_models?size=5]"
    header = {"WWW-Authenticate": WWW_AUTHENTICATE}
    assert caught.value.meta.status == 401
    assert caught.value.body == {
        "error": {
            "root_cause": [{"type": "security_exception", "reason": reason, "header": header}],
            "type": "security_exception",
            "reason": reason,
            "header": header,
        },
        "status": 401,
    }
    with pytest.raises(urllib.error.HTTPError) as raw:
        urllib.request.urlopen(f"{node.url}/_ml/trained_models", timeout=10)
    assert raw.value.headers.get_all("WWW-Authenticate") == WWW_AUTHENTICATE


def test_wrong_credentials_name_this_request(node, secured):
    secured.add_user("bob", "right", ["manage_ml"])
    wrong = client(node, basic("bob", "wrong"))
    status, error = error_of(lambda: wrong.ml.get_trained_models())
    assert (status, error["reason"]) == (
        401,
        "unable to authenticate user [bob] for REST request [/_ml/trained_models]",
    )


def test_a_monitor_user_reads_but_cannot_start(node, secured):
    viewer = client(node, secured.add_user("vera", "pw", ["monitor_ml"], roles=["ml_viewer", "auditor"]))
    assert viewer.ml.get_trained_models().body["count"] == 1  # the built-in language identification model
    status, error = error_of(lambda: viewer.ml.start_trained_model_deployment(model_id="absent"))
    assert (status, error["type"]) == (403, "security_exception")
    assert error["reason"] == (
        f"action [{START}] is unauthorized for user [vera] with effective roles [auditor,ml_viewer], "
        "this action is granted by the cluster privileges [manage_inference,manage_ml,manage,all]"
    )
    status, error = error_of(lambda: viewer.ml.infer_trained_model(model_id="absent", docs=[{"text_field": "x"}]))
    assert (status, error["reason"]) == (
        404,
        "Could not find trained model [absent]",
    )  # past the guard: monitor_ml may infer


def test_exact_action_privileges_pass_as_the_cluster_would_allow(node, secured):
    """`manage_inference` holds the deployment actions by exact name, so `_has_privileges` asked with the action name
    alone answers false (`<action>*` is not inside the role); the node also asks for the privileges that grant it."""
    operator = client(node, secured.add_user("olga", "pw", ["manage_inference"]))
    status, error = error_of(lambda: operator.ml.start_trained_model_deployment(model_id="absent"))
    assert (status, error["reason"]) == (404, "Could not find trained model [absent]")  # past the guard
    status, error = error_of(lambda: operator.ml.delete_trained_model(model_id="absent"))
    assert status == 403 and error["reason"].startswith("action [cluster:admin/xpack/ml/inference/delete]")
    reader = client(node, secured.add_user("ivan", "pw", ["monitor_inference"]))
    infer = lambda: reader.perform_request(  # noqa: E731
        "POST",
        "/_ml/trained_models/absent/deployment/_infer",
        body={"docs": [{"text_field": "x"}]},
        headers={"content-type": "application/json"},
    )
    assert error_of(infer)[0] == 404
    assert error_of(lambda: reader.ml.start_trained_model_deployment(model_id="absent"))[0] == 403


def test_has_privileges_judges_action_names_as_patterns(secured):
    """The double's `_has_privileges`, as RBACEngine answers it: an action name is `<action>*`."""
    who = secured.add_user("pat", "pw", ["manage_inference", "monitor_ml"])
    es = Elasticsearch(secured.url, headers={"authorization": who})
    body = {"cluster": [START, "manage_inference", "cluster:monitor/xpack/ml/inference/infer", "manage_ml"]}
    answer = es.perform_request(
        "POST",
        "/_security/user/_has_privileges",
        body=body,
        headers={"accept": COMPATIBLE_8, "content-type": COMPATIBLE_8},
    ).body
    assert answer["cluster"] == {
        START: False,
        "manage_inference": True,
        "cluster:monitor/xpack/ml/inference/infer": True,
        "manage_ml": False,
    }


def test_api_keys_are_described_by_id(node, secured):
    key = client(node, secured.add_api_key("k-1", "carol", ["monitor_ml"]))
    status, error = error_of(lambda: key.ml.delete_trained_model(model_id="absent"))
    assert (status, error["reason"]) == (
        403,
        "action [cluster:admin/xpack/ml/inference/delete] is unauthorized for API key id [k-1] of user [carol], "
        "this action is granted by the cluster privileges [manage_ml,manage,all]",
    )


def test_a_manager_passes_and_verdicts_are_kept_briefly(node, secured):
    header = secured.add_user("max", "pw", ["manage_ml"])
    manager = client(node, header)

    def asked():
        return len([c for c in secured.calls("POST", "/_security/user/_has_privileges") if START in c[2]["cluster"]])

    before = asked()
    for _ in range(2):
        status, error = error_of(lambda: manager.ml.start_trained_model_deployment(model_id="absent"))
        assert (status, error["reason"]) == (404, "Could not find trained model [absent]")
    assert asked() == before + 1
    secured.state.principals[header].privileges = []  # revoked: the node still trusts its verdict for a while
    assert error_of(lambda: manager.ml.start_trained_model_deployment(model_id="absent"))[0] == 404


def test_callbacks_take_the_shared_secret_not_user_credentials(node, secured):
    user = secured.add_user("uma", "pw", ["all"])
    before = len(secured.state.requests)

    def callback(header):
        json = {"content-type": "application/json"}
        return client(node, header).perform_request(
            "POST", "/_sidecar/custom/absent", body={"input": ["x"]}, headers=json
        )

    status, error = error_of(lambda: callback(user))
    assert (status, error["reason"]) == (401, "the callback secret is missing or wrong")
    status, error = error_of(lambda: callback(f"Bearer {SECRET}"))
    assert (status, error["reason"]) == (404, "Could not find trained model [absent]")
    assert not [c for c in secured.state.requests[before:] if c[1].startswith("/_security")]


def test_a_peer_forwarding_an_infer_passes_with_the_shared_secret(node):
    forwarded = {"content-type": "application/json", FORWARDED_HEADER: "peer-node-id"}

    def infer(header):
        body = {"docs": [{"text_field": "x"}]}
        return client(node, header).perform_request(
            "POST", "/_ml/trained_models/absent/_infer", body=body, headers=forwarded
        )

    assert error_of(lambda: infer(f"Bearer {SECRET}")) == (
        404,
        {
            "root_cause": [{"type": "resource_not_found_exception", "reason": "Could not find trained model [absent]"}],
            "type": "resource_not_found_exception",
            "reason": "Could not find trained model [absent]",
        },
    )
    assert error_of(lambda: infer("Bearer wrong"))[0] == 401


def test_model_aliases_need_manage_ml(node, secured):
    viewer = client(node, secured.add_user("alia", "pw", ["monitor_ml"], roles=["ml_viewer"]))
    for call, action in [
        (lambda: viewer.ml.put_trained_model_alias(model_id="absent", model_alias="nick"), "put"),
        (lambda: viewer.ml.delete_trained_model_alias(model_id="absent", model_alias="nick"), "delete"),
    ]:
        status, error = error_of(call)
        assert (status, error["reason"]) == (
            403,
            f"action [cluster:admin/xpack/ml/inference/model_aliases/{action}] is unauthorized for user [alia] with "
            "effective roles [ml_viewer], this action is granted by the cluster privileges [manage_ml,manage,all]",
        )
    manager = client(node, secured.add_user("manny", "pw", ["manage_ml"]))
    status, error = error_of(lambda: manager.ml.put_trained_model_alias(model_id="absent", model_alias="nick"))
    assert (status, error["reason"]) == (404, "Could not find trained model [absent]")  # past the guard
    status, error = error_of(lambda: manager.ml.delete_trained_model_alias(model_id="absent", model_alias="nick"))
    assert (status, error["reason"]) == (404, "model_alias [nick] could not be found")
