"""The worker's end of the channel when the node has closed its own: a quiet exit, not a traceback."""

from __future__ import annotations

import socket

import pytest

from sidecar.workers.channel import send
from sidecar.workers.spec import READY


def test_a_worker_whose_node_closed_the_channel_exits_quietly() -> None:
    node_end, worker_end = socket.socketpair()
    node_end.close()  # the deployment stopped while the worker was loading
    with pytest.raises(SystemExit) as exited:
        send(worker_end, (READY, {"batching": True}))
    assert exited.value.code == 0
    worker_end.close()
