"""Length-prefixed pickled messages over a socket pair between the node and a worker.

The node side is an asyncio stream, so a large batch or result never blocks its event loop; the worker side
is a plain blocking socket.
"""

from __future__ import annotations

import asyncio
import pickle
import socket
import struct
from typing import Any

_HEADER = struct.Struct("!Q")


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def read(reader: asyncio.StreamReader) -> Any:
    """The next message; raises asyncio.IncompleteReadError when the worker is gone."""
    (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
    return pickle.loads(await reader.readexactly(size))


def send(sock: socket.socket, message: Any) -> None:
    """The worker's send; when the node has closed its end (the deployment stopped, the node left), the worker exits
    quietly: nobody is left to answer, and a traceback would only alarm whoever reads the log."""
    try:
        sock.sendall(frame(message))
    except (BrokenPipeError, ConnectionResetError):
        raise SystemExit(0) from None


def receive(sock: socket.socket) -> Any:
    """The next message; raises EOFError when the node is gone."""
    (size,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    return pickle.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, size: int) -> bytes:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the node closed the channel")
        got += n
    return bytes(buffer)
