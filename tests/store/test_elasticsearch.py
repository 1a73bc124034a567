"""What only the Elasticsearch backend promises: hidden strict indices, chunk documents, and no lost race."""

import base64
import time

import pytest
from elasticsearch import BadRequestError

from sidecar.errors import EsError
from sidecar.store.base import AlreadyExists, PartInfo
from sidecar.store.elasticsearch import ElasticsearchStore
from tests.support.concurrency import together


def index_of(store, kind):
    return next(name for name in store.indices if name.endswith(f"-{kind}"))


def use_every_index(store):
    assert store.cluster_uuid
    store.create_model({"model_id": "m"})
    store.create_deployment({"model_id": "m"})
    store.put_model_alias("m-alias", "m", None)
    store.heartbeat({"id": "n1"})


def test_indices_are_hidden_single_shard_and_strictly_mapped(es_client, es_stores):
    store = es_stores()
    use_every_index(store)
    described = es_client.indices.get(index=",".join(store.indices))
    assert sorted(described) == sorted(store.indices) and not any(name.startswith(".") for name in described)
    for name, index in described.items():
        settings = index["settings"]["index"]
        shape = (settings["hidden"], settings["number_of_shards"], settings["auto_expand_replicas"])
        assert shape == ("true", "1", "0-1"), name
        assert index["mappings"]["dynamic"] == "strict", name
    assert described[index_of(store, "models")]["mappings"]["properties"] == {
        "model_id": {"type": "keyword"},
        "config": {"type": "object", "enabled": False},
    }


def test_strict_mapping_refuses_a_stray_field(es_client, es_stores):
    store = es_stores()
    use_every_index(store)
    with pytest.raises(BadRequestError) as refused:
        es_client.index(index=index_of(store, "models"), id="x", document={"model_id": "x", "stray": 1})
    assert refused.value.error == "strict_dynamic_mapping_exception"


def test_cluster_refusal_reaches_the_caller_as_an_es_error(es_client, es_stores):
    store = es_stores()
    strict = {"dynamic": "strict", "properties": {"model_id": {"type": "keyword"}}}
    es_client.indices.create(index=index_of(store, "models"), mappings=strict)
    with pytest.raises(EsError) as refused:
        store.create_model({"model_id": "m"})
    assert (refused.value.status, refused.value.type) == (400, "strict_dynamic_mapping_exception")


def test_prefix_must_be_a_plain_index_name(es_client):
    for prefix in (".sidecar", "Sidecar", "_sidecar", "side car"):
        with pytest.raises(EsError) as refused:
            ElasticsearchStore(es_client, prefix=prefix)
        assert refused.value.type == "illegal_argument_exception"


def test_definition_part_is_one_base64_document_per_chunk(es_client, es_stores):
    store = es_stores()
    store.create_model({"model_id": "m"})
    store.put_definition_part("m", PartInfo(1, 2, 5, 2), b"\x00\xff")
    assert es_client.get(index=index_of(store, "definitions"), id="m_1")["_source"] == {
        "model_id": "m",
        "part": 1,
        "total_parts": 2,
        "total_definition_length": 5,
        "length": 2,
        "definition": base64.b64encode(b"\x00\xff").decode(),
    }


def test_delete_cut_short_after_the_config_hides_the_model_and_frees_its_id(es_client, es_stores):
    store = es_stores()
    store.create_model({"model_id": "m"})
    store.put_definition_part("m", PartInfo(0, 1, 3, 3), b"old")
    store.put_vocabulary("m", {"vocabulary": ["old"]})
    es_client.delete(index=index_of(store, "models"), id="m")  # the crash: only the config's delete happened
    assert store.get_model("m") is None and store.list_models() == []
    store.create_model({"model_id": "m"})
    store.put_definition_part("m", PartInfo(0, 1, 3, 3), b"new")
    store.put_vocabulary("m", {"vocabulary": ["new"]})
    assert b"".join(store.iter_definition("m")) == b"new"


def test_concurrent_deployment_updates_from_two_nodes_lose_nothing(es_stores):
    first, second = es_stores(), es_stores()
    first.create_model({"model_id": "m"})
    first.create_deployment({"model_id": "m"})

    def update(store, name):
        for i in range(25):
            store.update_deployment("m", {f"{name}{i}": i})

    together(lambda: update(first, "a"), lambda: update(second, "b"))
    expected = {"model_id": "m"} | {f"a{i}": i for i in range(25)} | {f"b{i}": i for i in range(25)}
    assert first.get_deployment("m") == expected


def test_routes_written_at_once_by_many_nodes_all_land(es_stores):
    stores = [es_stores() for _ in range(4)]
    stores[0].create_model({"model_id": "m"})
    stores[0].create_deployment({"model_id": "m"})
    together(*(lambda s=s, n=n: s.put_route("m", f"n{n}", "started") for n, s in enumerate(stores)))
    assert list(stores[0].routes("m")) == ["n0", "n1", "n2", "n3"]


def test_racing_creates_of_one_model_id_have_exactly_one_winner(es_stores):
    first, second = es_stores(), es_stores()

    def create(store, by, model_id):
        try:
            store.create_model({"model_id": model_id, "by": by})
        except AlreadyExists:
            return None
        return by

    for model_id in ("m1", "m2", "m3"):
        results = together(lambda: create(first, "first", model_id), lambda: create(second, "second", model_id))
        [winner] = [by for by in results if by is not None]
        assert second.get_model(model_id)["by"] == winner


def test_nodes_starting_together_agree_on_the_cluster_uuid(es_stores):
    stores = [es_stores() for _ in range(3)]
    uuids = together(*(lambda s=s: s.cluster_uuid for s in stores))
    assert len(set(uuids)) == 1 and es_stores().cluster_uuid == uuids[0]


def test_heartbeat_stamps_last_seen_in_epoch_seconds_of_the_nodes_clock(es_stores):
    store = es_stores()
    before = time.time()
    store.heartbeat({"id": "n1", "name": "one"})
    [node] = store.nodes()
    assert before <= node["last_seen"] <= time.time()
    assert node == {"id": "n1", "name": "one", "last_seen": node["last_seen"]}


def test_an_index_deleted_under_the_store_comes_back_with_its_mapping(es_client, es_stores):
    """A write auto-creates a missing index; the store's index template gives it the strict mapping, not dynamic ones."""
    store = es_stores()
    use_every_index(store)
    es_client.indices.delete(index=index_of(store, "models"))
    assert store.list_models() == []
    store.create_model({"model_id": "again"})
    described = es_client.indices.get(index=index_of(store, "models"))[index_of(store, "models")]
    assert described["mappings"]["dynamic"] == "strict"
    assert described["settings"]["index"]["hidden"] == "true"
    assert store.get_model("again") == {"model_id": "again"}


def test_the_reconcile_read_leaves_refreshing_to_the_cluster(es_client, es_stores):
    """`fresh=False` sends no `_refresh`: the indices refresh themselves every second (an explicit interval, so
    they never go search-idle), and a deployment written a second ago is listed."""
    store = es_stores()
    store.create_model({"model_id": "m"})
    store.create_deployment({"model_id": "m"})
    settings = es_client.indices.get(index=index_of(store, "deployments"))[index_of(store, "deployments")]["settings"]
    assert settings["index"]["refresh_interval"] == "1s"
    time.sleep(1.1)
    assert [d["model_id"] for d in store.list_deployments(fresh=False)] == ["m"]
