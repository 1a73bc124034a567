"""The SQLite store on a disk that fills up: writes answer Elasticsearch's flood-stage block, deletes still work
and give the space back. The disk is a real, small tmpfs (mounting needs root; skipped where not permitted); a
file size limit is a real RLIMIT_FSIZE on a store in its own process."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.errors import EsError
from sidecar.store.base import PartInfo
from sidecar.store.sqlite import SqliteStore

DISK_MIB = 16
CHUNK = 512 * 1024
FLOOD_STAGE = (
    "blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete "
    "block];"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of DISK_MIB mounted for the test."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def fill(store: SqliteStore, model_id: str) -> EsError:
    """Upload parts of `model_id` until the disk is full; the error the store gave."""
    store.create_model({"model_id": model_id})
    for part in range(10_000):
        try:
            store.put_definition_part(model_id, PartInfo(part, 10_000, CHUNK * 10_000, CHUNK), os.urandom(CHUNK))
        except EsError as full:
            return full
    raise AssertionError("the disk never filled")


def test_a_write_on_a_full_disk_is_the_flood_stage_block(small_disk):
    store = SqliteStore(small_disk / "store.db")
    full = fill(store, "a")
    assert (full.status, full.type, full.reason) == (429, "cluster_block_exception", f"index [store.db] {FLOOD_STAGE}")
    stored = store.definition_parts("a")
    assert [p.part for p in stored] == list(range(len(stored)))  # the refused part left nothing half-written
    with pytest.raises(EsError) as again:
        store.put_vocabulary("a", {"vocabulary": ["x" * CHUNK]})
    assert again.value.status == 429
    store.close()


def test_deleting_on_a_full_disk_works_and_gives_the_space_back(small_disk):
    store = SqliteStore(small_disk / "store.db")
    fill(store, "a")
    assert free_bytes(small_disk) < CHUNK
    assert store.delete_model("a") is True
    assert store.get_model("a") is None and store.definition_parts("a") == []
    assert (small_disk / "store.db").stat().st_size < CHUNK  # the file shrank: the space is the filesystem's again
    assert free_bytes(small_disk) > (DISK_MIB // 3) << 20
    store.create_model({"model_id": "b"})  # and writes work again
    store.close()


def test_deleting_an_older_model_on_a_full_disk_gives_its_space_back(small_disk):
    store = SqliteStore(small_disk / "store.db")
    store.create_model({"model_id": "older"})
    for part in range(6):
        store.put_definition_part("older", PartInfo(part, 6, CHUNK * 6, CHUNK), os.urandom(CHUNK))
    fill(store, "newer")  # its pages lie after the older model's: shrinking has to move them
    assert store.delete_model("older") is True
    assert free_bytes(small_disk) > 2 * CHUNK
    assert len(store.definition_parts("newer")) > 0
    store.close()


def test_a_second_node_on_the_same_file_deletes_on_a_full_disk_too(small_disk):
    first, second = SqliteStore(small_disk / "store.db"), SqliteStore(small_disk / "store.db")
    fill(first, "a")
    assert second.delete_model("a") is True
    assert first.get_model("a") is None
    first.close()
    second.close()


_AT_SIZE_LIMIT = """
import json, os, sys
from pathlib import Path
from sidecar.errors import EsError
from sidecar.store.base import PartInfo
from sidecar.store.sqlite import SqliteStore
store = SqliteStore(Path(sys.argv[1]))
store.create_model({"model_id": "a"})
errors = []
for part in range(1000):
    try:
        store.put_definition_part("a", PartInfo(part, 1000, 1000 * 65536, 65536), os.urandom(65536))
    except EsError as full:
        errors.append([full.status, full.type, full.reason])
        break
try:
    store.delete_model("a")
except EsError as refused:
    errors.append([refused.status, refused.type, refused.reason])
print(json.dumps(errors))
"""


def test_a_file_at_the_process_size_limit_is_the_same_block_and_a_delete_says_why_it_cannot(tmp_path):
    """RLIMIT_FSIZE turns a growing write into EFBIG, which SQLite reports as a failed write, not a full disk. Once
    the file is at the limit, no delete can work either: the log's pages cannot go back into the file."""
    limit = 4 << 20

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = subprocess.run(
        [sys.executable, "-c", _AT_SIZE_LIMIT, str(tmp_path / "store.db")],
        preexec_fn=limit_file_size, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [
        [429, "cluster_block_exception", f"index [store.db] {FLOOD_STAGE}"],
        [429, "status_exception",
         f"not enough room on disk to delete: the process's file size limit (RLIMIT_FSIZE) of [{limit}] bytes keeps "
         "[store.db] from taking back its pages from the write-ahead log; raise the limit"],
    ]  # fmt: skip
