"""One node per data dir: a second `sidecar serve` on the same dir refuses to start, and a crash frees the dir."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cluster.lock import NodeLocked, lock_data_dir
from tests.support.node import NodeProcess, free_port


def message(data_dir: Path) -> str:
    """NodeEnvironment's wording, with the node's one data path."""
    return (
        f"failed to obtain node locks, tried [{data_dir.resolve()}]; maybe these locations are not writable or "
        "multiple nodes were started on the same data path?"
    )


def second_node(data_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sidecar", "serve", "--port", str(free_port()), "--data-dir", str(data_dir)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_a_second_node_on_the_same_data_dir_refuses_to_start_in_one_line(tmp_path: Path) -> None:
    first = NodeProcess(tmp_path / "data").start()
    try:
        second = second_node(tmp_path / "data")
        assert second.returncode == 1
        assert second.stderr.splitlines() == [f"sidecar: error: {message(tmp_path / 'data')}"]
        assert first.process is not None and first.process.poll() is None, "the first node keeps running"
    finally:
        first.stop()


def test_a_killed_node_leaves_the_data_dir_free_and_its_node_id_to_the_next(tmp_path: Path) -> None:
    first = NodeProcess(tmp_path / "data").start()
    node_id = first.client().perform_request("GET", "/_sidecar/status").body["node_id"]
    first.kill()  # SIGKILL: no shutdown code runs, the lock file stays on disk
    assert (tmp_path / "data" / "node.lock").exists()
    again = NodeProcess(tmp_path / "data").start()
    try:
        assert again.client().perform_request("GET", "/_sidecar/status").body["node_id"] == node_id
        assert second_node(tmp_path / "data").returncode == 1, "the new node holds the lock in turn"
    finally:
        again.stop()


def test_nodes_on_their_own_data_dirs_do_not_block_each_other(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path / "a")
    try:
        lock_data_dir(tmp_path / "b").close()
        with pytest.raises(NodeLocked, match="failed to obtain node locks"):
            lock_data_dir(tmp_path / "a")
    finally:
        held.close()
    lock_data_dir(tmp_path / "a").close()  # closing is releasing
