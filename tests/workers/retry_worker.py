"""Worker mains for the pool's own tests: they speak the real worker protocol but misbehave on purpose.

They stand in for the model-running worker only; the pool under test, its processes and channel are real.
"""

import os
import socket
from pathlib import Path

from sidecar.workers.channel import receive, send
from sidecar.workers.spec import DONE, INFER, READY, WorkerSpec


def crash_on_poison(conn: socket.socket, spec: WorkerSpec) -> None:
    """Echo each text back; die (exit code 3) on the text `poison`, and on `once` only while a marker file is absent."""
    send(conn, (READY, {"batching": True}))
    while True:
        message = receive(conn)
        if message[0] != INFER:
            return
        _, batch_id, docs = message
        marker = Path(spec.definition)
        for text, _ in docs:
            if text == "poison" or (text == "once" and not marker.exists()):
                marker.touch()
                os._exit(3)
        send(conn, (DONE, batch_id, [f'{{"text":"{text}"}}'.encode() for text, _ in docs], 1.0))
