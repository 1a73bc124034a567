"""HTTP/1.1 over a bare socket, for what clients never send: huge heads, trickles, floods of chunked bodies."""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

import orjson

MiB = 1 << 20


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


def connect(url: str, timeout: float = 30) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def head(method: str, path: str, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def answered(sock: socket.socket, wait: float = 0.0) -> bool:
    """Whether the server has said something (or closed) within `wait` seconds."""
    return bool(select.select([sock], [], [], wait)[0])


def read_answer(sock: socket.socket) -> Answer:
    """One response framed by its Content-Length (the node sends no other kind)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(sock)
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        body += _recv(sock)
    return Answer(int(status_line.split()[1]), headers, body)


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed the connection (reading and dropping what it sends), or None."""
    start = time.monotonic()
    while (left := start + seconds - time.monotonic()) > 0:
        if answered(sock, left):
            try:
                if not sock.recv(65536):
                    return time.monotonic() - start
            except ConnectionResetError:
                return time.monotonic() - start
    return None


def send_until_refused(sock: socket.socket, data: bytes, limit: int) -> int:
    """Send `data` again and again up to `limit` bytes; returns how many went out before the server shut the door."""
    sent = 0
    try:
        while sent < limit:
            sock.sendall(data)
            sent += len(data)
    except OSError:
        pass
    return sent


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection mid-answer")
    return chunk
