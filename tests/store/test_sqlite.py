"""What only the SQLite backend promises: a shared file, and nothing half-written after a crash."""

import multiprocessing
import os
import signal

from sidecar.store.base import PartInfo
from sidecar.store.sqlite import SqliteStore


def test_two_handles_on_one_file_share_state_and_uuid(tmp_path):
    first, second = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    first.create_model({"model_id": "a"})
    assert second.get_model("a") == {"model_id": "a"}
    assert first.cluster_uuid == second.cluster_uuid


def _write_forever(path):
    store = SqliteStore(path)
    store.create_model({"model_id": "a"})
    part = 0
    while True:
        store.put_definition_part("a", PartInfo(part, 10_000, 10_000 * 65536, 65536), os.urandom(65536))
        part += 1


def test_killed_writer_leaves_only_whole_parts(tmp_path):
    path = tmp_path / "s.db"
    writer = multiprocessing.get_context("spawn").Process(target=_write_forever, args=(path,))
    writer.start()
    store = SqliteStore(path)
    while len(store.definition_parts("a")) < 20:
        pass
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    parts = SqliteStore(path).definition_parts("a")
    assert [p.part for p in parts] == list(range(len(parts)))
    assert all(p.length == 65536 for p in parts)
