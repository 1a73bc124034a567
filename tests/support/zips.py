"""Hand-built ZIP archives for the archive checks' tests: hostile layouts no ordinary writer produces."""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes  # as stored in the archive (compressed when method is 8)
    size: int  # uncompressed
    crc: int
    method: int = 0
    flags: int = 0


def stored(name: str, payload: bytes) -> Entry:
    return Entry(name, payload, len(payload), zlib.crc32(payload))


def deflated(name: str, payload: bytes) -> Entry:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return Entry(name, packer.compress(payload) + packer.flush(), len(payload), zlib.crc32(payload), method=8)


def entries_of(path: Path) -> list[Entry]:
    """The records of a real archive (a torch.jit.save file), stored uncompressed."""
    with zipfile.ZipFile(path) as archive:
        return [stored(info.filename, archive.read(info)) for info in archive.infolist()]


def build(entries: list[Entry], start: int = 0) -> bytes:
    """An archive whose offsets count from `start`: the bytes it will follow in the file."""
    body, directory = b"", b""
    for entry in entries:
        name = entry.name.encode()
        offset = start + len(body)
        fields = (entry.flags, entry.method, 0, 0, entry.crc, len(entry.data), entry.size, len(name), 0)
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, *fields) + name + entry.data
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, *fields[:-1], 0, 0, 0, 0, 0, offset) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(directory), start + len(body), 0)
    return body + directory + end
