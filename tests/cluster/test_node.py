"""A node's identity and the cores it takes."""


from sidecar.cli import _core_list, main
from sidecar.cluster.node import load_node
from sidecar.settings import Settings
from sidecar.workers.cores import usable_cores


def test_the_node_id_persists_in_the_data_dir(tmp_path):
    first = load_node(Settings(data_dir=tmp_path))
    again = load_node(Settings(data_dir=tmp_path))
    assert len(first.id) == 22 and first.id == again.id
    assert first.ephemeral_id != again.ephemeral_id


def test_cores_narrow_what_the_node_uses(tmp_path):
    usable = usable_cores()
    assert load_node(Settings(data_dir=tmp_path, cores=(usable[-1],))).cores == (usable[-1],)
    assert load_node(Settings(data_dir=tmp_path)).cores == tuple(usable)


def test_core_lists_parse_like_taskset():
    assert _core_list("0-3,6") == (0, 1, 2, 3, 6)


def test_unusable_cores_are_refused_at_start(tmp_path, capsys):
    assert main(["serve", "--data-dir", str(tmp_path), "--cores", "4096"]) == 2
    assert "none of --cores [4096] is usable here" in capsys.readouterr().err
