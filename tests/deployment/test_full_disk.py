"""A node whose data directory fills up: uploads and starts answer 429 with a reason, a start that cannot assemble
its definition fails cleanly, and deleting a model still works. The data directory is a real, small tmpfs
(mounting needs root; skipped where not permitted)."""

from __future__ import annotations

import base64
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy import error_of, uploaded
from tests.support.node import NodeProcess

DISK_MIB = 40
FLOOD_STAGE = (
    "index [sidecar.db] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has "
    "read-only-allow-delete block];"
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tmpfs of DISK_MIB as the node's data directory; the node's log stays outside it."""
    path = tmp_path_factory.mktemp("full-disk") / "data"
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MIB}m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@pytest.fixture(scope="module")
def node(data_dir: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(data_dir).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def es(node: NodeProcess):
    """The official client, told not to retry a 429: here it is the answer under test."""
    return node.client(retry_on_status=())


@pytest.fixture
def filler(data_dir: Path) -> Iterator[callable]:
    """Fill the disk, leaving about `room` bytes free; the filler goes after the test."""
    path = data_dir / "filler"

    def fill(room: int = 0) -> None:
        with open(path, "ab") as out:
            while _free(data_dir) > room:
                try:
                    out.write(bytes(min(1 << 20, max(_free(data_dir) - room, 4096))))
                    out.flush()
                except OSError:
                    break

    yield fill
    path.unlink(missing_ok=True)


def _free(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _start(es, model_id):
    return es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_start", params={"timeout": "30s"})


def test_an_upload_on_a_full_disk_is_429_and_deleting_still_works(es, node, data_dir, traced_ner, filler):
    model_id = uploaded(node.url, traced_ner, "full-upload")
    es.ml.put_trained_model(model_id="full-second", inference_config={"pass_through": {}}, model_type="pytorch")
    filler()
    full = _free(data_dir)
    part = {"definition": base64.b64encode(os.urandom(1 << 20)).decode(), "total_definition_length": 2 << 20, "total_parts": 2}
    assert error_of(
        lambda: es.perform_request("PUT", "/_ml/trained_models/full-second/definition/0", body=part, headers={"content-type": "application/json"})
    ) == (429, "cluster_block_exception", FLOOD_STAGE)  # fmt: skip
    assert es.ml.delete_trained_model(model_id=model_id).body == {"acknowledged": True}
    assert es.ml.delete_trained_model(model_id="full-second").body == {"acknowledged": True}
    assert error_of(lambda: es.ml.get_trained_models(model_id=model_id))[0] == 404
    assert _free(data_dir) - full > traced_ner.definition.stat().st_size // 2  # the model's bytes went back to the disk


def test_a_start_that_cannot_assemble_its_definition_fails_with_the_reason_and_leaves_nothing(
    es, node, data_dir, traced_ner, filler
):
    model_id = uploaded(node.url, traced_ner, "full-start")
    filler(room=traced_ner.definition.stat().st_size // 2)
    assert error_of(lambda: _start(es, model_id)) == (
        429, "status_exception",
        f"no room on this node's disk to assemble the model definition [{model_id}]: No space left on device",
    )  # fmt: skip
    assert list((data_dir / "definitions").iterdir()) == []  # no partial file left behind
    assert "deployment_stats" not in es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    time.sleep(0.5)  # the event loop reports a lost task exception when the task is collected
    assert "Task exception was never retrieved" not in node.log()
    assert "Traceback" not in node.log()


def test_a_start_on_a_full_disk_is_429_and_leaves_no_deployment(es, node, data_dir, traced_ner, filler):
    model_id = uploaded(node.url, traced_ner, "full-disk-start")
    filler()
    status, kind, reason = error_of(lambda: _start(es, model_id))
    assert status == 429, reason  # the store's flood-stage block, or the definition that found no room
    assert "deployment_stats" not in es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]
    assert not (data_dir / "definitions").exists() or list((data_dir / "definitions").iterdir()) == []
