"""What every store backend must do; run against each backend the `store` fixture yields."""

import pytest

from sidecar.store.base import AlreadyExists, AliasChanged, ModelDeployed, ModelMissing, PartInfo
from tests.support.concurrency import together

RACE_ROUNDS = 40


def config(model_id):
    return {"model_id": model_id, "model_type": "pytorch", "inference_config": {"ner": {}}}


def test_models_round_trip_sorted(store):
    store.create_model(config("b"))
    store.create_model(config("a"))
    assert [m["model_id"] for m in store.list_models()] == ["a", "b"]
    assert store.get_model("a") == config("a")
    assert store.get_model("zzz") is None


def test_duplicate_model_is_refused(store):
    store.create_model(config("a"))
    with pytest.raises(AlreadyExists):
        store.create_model(config("a"))


def test_definition_parts_in_order_and_unique(store):
    store.create_model(config("a"))
    store.put_definition_part("a", PartInfo(1, 2, 6, 2), b"ef")
    store.put_definition_part("a", PartInfo(0, 2, 6, 4), b"abcd")
    with pytest.raises(AlreadyExists):
        store.put_definition_part("a", PartInfo(0, 2, 6, 4), b"abcd")
    assert store.definition_parts("a") == [PartInfo(0, 2, 6, 4), PartInfo(1, 2, 6, 2)]
    assert b"".join(store.iter_definition("a")) == b"abcdef"


def test_vocabulary_once(store):
    store.create_model(config("a"))
    store.put_vocabulary("a", {"vocabulary": ["x"]})
    with pytest.raises(AlreadyExists):
        store.put_vocabulary("a", {"vocabulary": ["y"]})
    assert store.get_vocabulary("a") == {"vocabulary": ["x"]}


def test_delete_model_takes_parts_and_vocabulary(store):
    store.create_model(config("a"))
    store.put_definition_part("a", PartInfo(0, 1, 1, 1), b"x")
    store.put_vocabulary("a", {"vocabulary": ["x"]})
    assert store.delete_model("a") is True
    assert store.delete_model("a") is False
    assert store.definition_parts("a") == []
    assert store.get_vocabulary("a") is None


def test_deployments_and_routes(store):
    store.create_model(config("a"))
    store.create_deployment({"model_id": "a", "state": "started"})
    with pytest.raises(AlreadyExists):
        store.create_deployment({"model_id": "a", "state": "started"})
    store.put_route("a", "n2", "starting")
    store.put_route("a", "n1", "failed", "boom", 500)
    store.put_route("a", "n2", "started")
    assert store.routes("a") == {
        "n1": {"routing_state": "failed", "reason": "boom", "error_status": 500},
        "n2": {"routing_state": "started", "reason": "", "error_status": 0},
    }
    store.update_deployment("a", {"state": "stopping"})
    assert store.get_deployment("a") == {"model_id": "a", "state": "stopping"}
    store.delete_route("a", "n1")
    assert list(store.routes("a")) == ["n2"]
    store.delete_deployment("a")
    assert store.get_deployment("a") is None
    assert store.routes("a") == {}


def test_a_deployment_needs_its_model(store):
    with pytest.raises(ModelMissing):
        store.create_deployment({"model_id": "a", "state": "started"})
    assert store.get_deployment("a") is None and store.list_deployments() == []


def test_a_deployed_model_is_kept_whole_until_its_deployment_goes(store):
    store.create_model(config("a"))
    store.put_definition_part("a", PartInfo(0, 1, 1, 1), b"x")
    store.put_vocabulary("a", {"vocabulary": ["x"]})
    store.create_deployment({"model_id": "a", "state": "started"})
    with pytest.raises(ModelDeployed):
        store.delete_model("a")
    assert store.get_model("a") == config("a") and store.get_vocabulary("a") == {"vocabulary": ["x"]}
    assert store.definition_parts("a") == [PartInfo(0, 1, 1, 1)]
    store.delete_deployment("a")
    assert store.delete_model("a") is True


def won(call, loss):
    """True if `call` went through, False if it raised `loss`."""
    try:
        call()
    except loss:
        return False
    return True


def test_deploying_and_deleting_from_two_nodes_at_once_never_leave_a_deployment_without_its_model(make_store):
    deployer, deleter = make_store(), make_store()
    for _ in range(RACE_ROUNDS):
        deployer.create_model(config("a"))
        deployed, deleted = together(
            lambda: won(lambda: deployer.create_deployment({"model_id": "a", "state": "started"}), ModelMissing),
            lambda: won(lambda: deleter.delete_model("a"), ModelDeployed),
        )
        assert deployed != deleted, "exactly one of them wins"
        assert (deleter.get_deployment("a") is not None, deleter.get_model("a") is not None) == (deployed, deployed)
        if deployed:
            deleter.delete_deployment("a")
            assert deleter.delete_model("a") is True
    assert deleter.list_deployments() == [] and deleter.list_models() == []


def test_aliases_are_set_by_compare_and_set(store):
    store.create_model(config("a"))
    store.create_model(config("b"))
    store.put_model_alias("z-alias", "a", None)
    store.put_model_alias("m-alias", "a", None)
    assert store.model_aliases() == {"m-alias": "a", "z-alias": "a"}
    with pytest.raises(AliasChanged):
        store.put_model_alias("z-alias", "b", None)  # it names a by now
    with pytest.raises(AliasChanged):
        store.put_model_alias("new-alias", "b", "a")  # it names nothing
    store.put_model_alias("z-alias", "b", "a")
    assert store.get_model_alias("z-alias") == "b" and store.get_model_alias("missing") is None
    with pytest.raises(ModelMissing):
        store.put_model_alias("m-alias", "gone", "a")
    assert store.model_aliases() == {"m-alias": "a", "z-alias": "b"}


def test_an_alias_is_deleted_only_from_the_model_it_names(store):
    store.create_model(config("a"))
    store.put_model_alias("x", "a", None)
    assert store.delete_model_alias("x", "b") == "a"
    assert store.get_model_alias("x") == "a"
    assert store.delete_model_alias("x", "a") == "a"
    assert store.get_model_alias("x") is None
    assert store.delete_model_alias("x", "a") is None


def test_deleting_a_model_takes_its_aliases(store):
    store.create_model(config("a"))
    store.create_model(config("b"))
    store.put_model_alias("x", "a", None)
    store.put_model_alias("y", "b", None)
    assert store.delete_model("a") is True
    assert store.model_aliases() == {"y": "b"} and store.get_model_alias("x") is None


def test_aliasing_and_deleting_from_two_nodes_at_once_never_leave_an_alias_without_its_model(make_store):
    aliaser, deleter = make_store(), make_store()
    for _ in range(RACE_ROUNDS):
        aliaser.create_model(config("a"))
        aliased, deleted = together(
            lambda: won(lambda: aliaser.put_model_alias("x", "a", None), ModelMissing),
            lambda: deleter.delete_model("a"),
        )
        assert deleted and deleter.get_model("a") is None
        assert deleter.get_model_alias("x") is None, f"an alias names a deleted model (aliased first: {aliased})"


def test_a_reassign_to_a_model_being_deleted_keeps_or_drops_the_alias_never_half(make_store):
    aliaser, deleter = make_store(), make_store()
    aliaser.create_model(config("old"))
    aliaser.put_model_alias("x", "old", None)
    for _ in range(RACE_ROUNDS):
        aliaser.create_model(config("new"))
        moved, _ = together(
            lambda: won(lambda: aliaser.put_model_alias("x", "new", "old"), ModelMissing),
            lambda: deleter.delete_model("new"),
        )
        # moved first: it went with the deleted model; refused: it names what it named before
        assert deleter.get_model_alias("x") == (None if moved else "old")
        if moved:
            aliaser.put_model_alias("x", "old", None)


def test_two_reassigns_at_once_one_wins(make_store):
    first, second = make_store(), make_store()
    for model_id in ("a", "b", "c"):
        first.create_model(config(model_id))
    for _ in range(RACE_ROUNDS // 4):
        first.put_model_alias("x", "a", first.get_model_alias("x"))
        to_b, to_c = together(
            lambda: won(lambda: first.put_model_alias("x", "b", "a"), AliasChanged),
            lambda: won(lambda: second.put_model_alias("x", "c", "a"), AliasChanged),
        )
        assert to_b != to_c, "exactly one of them wins"
        assert second.get_model_alias("x") == ("b" if to_b else "c")


def test_route_for_a_removed_deployment_is_ignored(store):
    store.put_route("gone", "n1", "started")
    assert store.routes("gone") == {}


def test_nodes_heartbeat_and_removal(store):
    store.create_model(config("a"))
    store.create_deployment({"model_id": "a", "state": "started"})
    store.heartbeat({"id": "n1", "name": "one"})
    store.heartbeat({"id": "n1", "name": "one again"})
    store.put_route("a", "n1", "started")
    [node] = store.nodes()
    assert node["name"] == "one again" and node["last_seen"] > 0
    store.remove_node("n1")
    assert store.nodes() == [] and store.routes("a") == {}


def test_cluster_uuid_is_stable(store):
    assert len(store.cluster_uuid) == 22
