"""Assembling a definition on local disk when the disk has no room: Elasticsearch's 429 and nothing left behind.

The limit is a real RLIMIT_FSIZE on a process of its own (a full tmpfs is covered with a node in
tests/deployment/test_full_disk.py)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

_WRITE = """
import json, sys
from pathlib import Path
from sidecar.errors import EsError
from sidecar.models.definition import write_definition
try:
    write_definition((bytes(1 << 20) for _ in range(4)), Path(sys.argv[1]))
    print(json.dumps(None))
except EsError as error:
    print(json.dumps([error.status, error.type, error.reason]))
"""


def write_under_limit(path, limit):
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    run = subprocess.run(
        [sys.executable, "-c", _WRITE, str(path)], preexec_fn=limit_file_size, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_a_definition_over_the_file_size_limit_is_a_429_and_leaves_nothing(tmp_path):
    path = tmp_path / "definitions" / "big-model.pt"
    assert write_under_limit(path, 1 << 20) == [
        429, "status_exception",
        "no room on this node's disk to assemble the model definition [big-model]: File too large",
    ]  # fmt: skip
    assert list(path.parent.iterdir()) == []


def test_a_definition_within_the_limit_is_written_whole(tmp_path):
    path = tmp_path / "definitions" / "small-model.pt"
    assert write_under_limit(path, 8 << 20) is None
    assert path.read_bytes() == bytes(4 << 20)
    assert list(path.parent.iterdir()) == [path]
