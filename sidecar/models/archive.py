"""One strict reading of a ZIP archive: a model definition must be exactly one well-formed archive.

Python's `zipfile` forgives what torch's reader (miniz) reads differently: data before the first record shifts its
offsets, while torch uses them as written. A file can then hold two archives, one for each reader. This reader
forgives nothing, so whatever it accepts, torch sees the same records: the end record closes the file, the central
directory ends where the end records begin, the records tile the file from byte 0 up to the central directory with no
gap or overlap, each local header agrees with its central entry, and no two names are equal once ASCII letters are
lowered (torch looks names up ignoring case). Only stored and deflated records are read, never encrypted ones, and a
deflated record may not claim more than `MAX_RATIO` times its compressed size, so a bomb is refused before inflating.

Pure Python and torch-free, so the API process can import it.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

# TorchScript code inflates about 2-5x; deflate itself cannot go past ~1,030x. 100x leaves real archives alone and
# bounds the work a crafted record can cause.
MAX_RATIO = 100
MAX_CENTRAL_DIRECTORY_BYTES = 64 << 20
CHUNK_BYTES = 1 << 20

_LOCAL, _CENTRAL, _END = 0x04034B50, 0x02014B50, 0x06054B50
_END64, _LOCATOR64, _DESCRIPTOR = 0x06064B50, 0x07064B50, 0x08074B50
_ZIP64_EXTRA = 0x0001
_ENCRYPTED = 0x0001 | 0x0040  # traditional and strong encryption
_KNOWN_FLAGS = 0x0002 | 0x0004 | 0x0008 | 0x0800  # deflate level hints, data descriptor, UTF-8 names
_DATA_DESCRIPTOR = 0x0008
_STORED, _DEFLATED = 0, 8
_U16, _U32 = 0xFFFF, 0xFFFFFFFF

_END_FORMAT = struct.Struct("<IHHHHIIH")  # 22 bytes
_LOCATOR_FORMAT = struct.Struct("<IIQI")  # 20 bytes
_END64_FORMAT = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_CENTRAL_FORMAT = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_LOCAL_FORMAT = struct.Struct("<IHHHHHIIIHH")  # 30 bytes


class ArchiveError(ValueError):
    """The file is not exactly one well-formed archive; the message says where it is not."""


@dataclass(frozen=True)
class Record:
    name: str
    method: int
    flags: int
    crc: int
    compressed_size: int
    size: int
    offset: int  # of the local header
    data_offset: int = 0  # of the record's bytes, once the local header is read


def read_records(file: BinaryIO) -> list[Record]:
    """Every record of the archive, in file order, after checking the whole layout."""
    size = file.seek(0, 2)
    count, directory_size, directory_offset, directory_end = _end_records(file, size)
    if directory_size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise ArchiveError(f"central directory of [{directory_size}] bytes is too large")
    if directory_offset + directory_size != directory_end:
        raise ArchiveError("central directory does not end where the end record begins")
    entries = _central_directory(_read_at(file, directory_offset, directory_size), count)
    return _tile(file, sorted(entries, key=lambda record: record.offset), directory_offset)


def contents(file: BinaryIO, record: Record) -> Iterator[bytes]:
    """A record's bytes in chunks, inflated if deflated; its size and CRC-32 are checked by the end."""
    inflater = zlib.decompressobj(-15) if record.method == _DEFLATED else None
    crc, produced = 0, 0
    file.seek(record.data_offset)
    remaining = record.compressed_size
    while remaining:
        raw = file.read(min(CHUNK_BYTES, remaining))
        if not raw:
            raise ArchiveError(f"record [{record.name}] is truncated")
        remaining -= len(raw)
        for chunk in _inflated(inflater, raw, record) if inflater else (raw,):
            produced += len(chunk)
            if produced > record.size:
                raise ArchiveError(f"record [{record.name}] holds more than its declared [{record.size}] bytes")
            crc = zlib.crc32(chunk, crc)
            yield chunk
    if inflater is not None and (not inflater.eof or inflater.unused_data):
        raise ArchiveError(f"deflated data of [{record.name}] does not end where the record ends")
    if produced != record.size:
        raise ArchiveError(f"record [{record.name}] holds [{produced}] bytes, not the declared [{record.size}]")
    if crc != record.crc:
        raise ArchiveError(f"Bad CRC-32 for file [{record.name}]")


def _inflated(inflater: zlib._Decompress, raw: bytes, record: Record) -> Iterator[bytes]:
    """Inflate in bounded steps: the output of one compressed chunk may be far larger than the chunk."""
    try:
        while raw:
            yield inflater.decompress(raw, CHUNK_BYTES)
            raw = inflater.unconsumed_tail
    except zlib.error as error:
        raise ArchiveError(f"deflated data of [{record.name}] is damaged: {error}") from None


def _end_records(file: BinaryIO, size: int) -> tuple[int, int, int, int]:
    """(record count, central directory size and offset, where the end records begin) from the file's last bytes.

    The end record must be the file's last 22 bytes: no archive comment, nothing appended.
    """
    if size < _END_FORMAT.size:
        raise ArchiveError("File is not a zip file")
    end_offset = size - _END_FORMAT.size
    signature, disk, directory_disk, disk_count, count, directory_size, directory_offset, comment = _END_FORMAT.unpack(
        _read_at(file, end_offset, _END_FORMAT.size)
    )
    if signature != _END:
        raise ArchiveError("File is not a zip file: no end of central directory record at its end")
    if disk or directory_disk or comment or disk_count != count:
        raise ArchiveError("archive spans several disks or carries a comment")
    locator_offset = end_offset - _LOCATOR_FORMAT.size
    if locator_offset < 0 or _u32_at(file, locator_offset) != _LOCATOR64:
        if _U16 in (count,) or _U32 in (directory_size, directory_offset):
            raise ArchiveError("archive needs a zip64 end record but has none")
        return count, directory_size, directory_offset, end_offset
    _, locator_disk, end64_offset, disks = _LOCATOR_FORMAT.unpack(_read_at(file, locator_offset, _LOCATOR_FORMAT.size))
    if locator_disk or disks != 1 or end64_offset != locator_offset - _END64_FORMAT.size:
        raise ArchiveError("zip64 end record is not where its locator says")
    fields = _END64_FORMAT.unpack(_read_at(file, end64_offset, _END64_FORMAT.size))
    signature, record_size, _, _, disk, directory_disk, disk_count, count64, size64, offset64 = fields
    if signature != _END64 or record_size != _END64_FORMAT.size - 12 or disk or directory_disk or disk_count != count64:
        raise ArchiveError("zip64 end record is malformed")
    pairs = ((count, count64, _U16), (directory_size, size64, _U32), (directory_offset, offset64, _U32))
    for short, long, ones in pairs:
        if short not in (long, ones):
            raise ArchiveError("zip64 end record disagrees with the end record")
    return count64, size64, offset64, end64_offset


def _central_directory(data: bytes, count: int) -> list[Record]:
    """Parse exactly `count` entries that fill the central directory; refuse what torch might read differently."""
    records: list[Record] = []
    seen: set[bytes] = set()
    position = 0
    for _ in range(count):
        if position + _CENTRAL_FORMAT.size > len(data):
            raise ArchiveError("central directory is shorter than its entry count")
        fields = _CENTRAL_FORMAT.unpack_from(data, position)
        signature, _, _, flags, method, _, _, crc, compressed, size = fields[:10]
        name_length, extra_length, comment_length, disk, _, _, offset = fields[10:]
        name_start = position + _CENTRAL_FORMAT.size
        extra_start = name_start + name_length
        position = extra_start + extra_length + comment_length
        if signature != _CENTRAL or position > len(data):
            raise ArchiveError("central directory entry is malformed")
        raw_name = data[name_start:extra_start]
        name = _name(raw_name)
        _check_entry(name, flags, method, comment_length)
        zip64 = _extras(data[extra_start : extra_start + extra_length], name).get(_ZIP64_EXTRA, b"")
        wide = (size, _U32), (compressed, _U32), (offset, _U32), (disk, _U16)
        size, compressed, offset, disk = _widened(zip64, name, *wide)
        if disk:
            raise ArchiveError(f"record [{name}] lies on another disk")
        if raw_name.lower() in seen:
            raise ArchiveError(f"archive holds record [{name}] twice (names are compared ignoring case)")
        seen.add(raw_name.lower())
        records.append(Record(name, method, flags, crc, compressed, size, offset))
    if position != len(data):
        raise ArchiveError("central directory holds more than its entry count")
    return records


def _check_entry(name: str, flags: int, method: int, comment_length: int) -> None:
    if flags & _ENCRYPTED:
        raise ArchiveError(f"record [{name}] is encrypted")
    if flags & ~_KNOWN_FLAGS:
        raise ArchiveError(f"record [{name}] has unsupported flags [{flags:#06x}]")
    if method not in (_STORED, _DEFLATED):
        raise ArchiveError(f"record [{name}] uses unsupported compression method [{method}]")
    if comment_length:
        raise ArchiveError(f"record [{name}] carries a comment")


def _tile(file: BinaryIO, records: list[Record], directory_offset: int) -> list[Record]:
    """Check that the records, each with its local header and data descriptor, cover [0, directory) exactly."""
    checked = []
    expected = 0
    for index, record in enumerate(records):
        if record.offset != expected:
            where = "before the first record" if index == 0 else f"between records before [{record.name}]"
            raise ArchiveError(f"archive has a gap or overlap {where}")
        following = records[index + 1].offset if index + 1 < len(records) else directory_offset
        record = _local_header(file, record)
        _check_size(record)
        data_end = record.data_offset + record.compressed_size
        expected = _descriptor_end(file, record, data_end, following) if record.flags & _DATA_DESCRIPTOR else data_end
        checked.append(record)
    if expected != directory_offset:
        raise ArchiveError("archive has a gap or overlap before its central directory")
    return checked


def _local_header(file: BinaryIO, record: Record) -> Record:
    """The record with its data offset, once its local header agrees with the central directory."""
    fields = _LOCAL_FORMAT.unpack(_read_at(file, record.offset, _LOCAL_FORMAT.size))
    signature, _, flags, method, _, _, crc, compressed, size, name_length, extra_length = fields
    name = _read_at(file, record.offset + _LOCAL_FORMAT.size, name_length)
    extras = _extras(_read_at(file, record.offset + _LOCAL_FORMAT.size + name_length, extra_length), record.name)
    if signature != _LOCAL or flags != record.flags or method != record.method or name != record.name.encode():
        raise ArchiveError(f"local header of [{record.name}] disagrees with the central directory")
    zip64 = extras.get(_ZIP64_EXTRA, b"")
    size, compressed = _widened(zip64, record.name, (size, _U32), (compressed, _U32))
    declared = (crc, compressed, size)
    if declared != (record.crc, record.compressed_size, record.size) and not (
        record.flags & _DATA_DESCRIPTOR and declared == (0, 0, 0)
    ):
        raise ArchiveError(f"local header of [{record.name}] disagrees with the central directory")
    data_offset = record.offset + _LOCAL_FORMAT.size + name_length + extra_length
    return Record(**{**record.__dict__, "data_offset": data_offset})


def _check_size(record: Record) -> None:
    if record.method == _STORED and record.size != record.compressed_size:
        raise ArchiveError(f"stored record [{record.name}] declares two sizes")
    if record.method == _DEFLATED and record.size > MAX_RATIO * max(record.compressed_size, 1):
        raise ArchiveError(
            f"record [{record.name}] would inflate [{record.compressed_size}] bytes to [{record.size}], "
            f"more than [{MAX_RATIO}] times"
        )


def _descriptor_end(file: BinaryIO, record: Record, data_end: int, following: int) -> int:
    """Where a record's data descriptor ends: it must fill the space up to the next record and repeat its values.

    Writers differ in whether the descriptor carries its signature and whether sizes take 4 or 8 bytes, so each
    form that would end exactly at `following` is tried.
    """
    for signed in (True, False):
        for wide in (False, True):
            length = 4 * signed + 4 + (16 if wide else 8)
            if data_end + length != following:
                continue
            layout = ("<I" if signed else "<") + ("IQQ" if wide else "III")
            values = struct.unpack(layout, _read_at(file, data_end, length))
            if values == (_DESCRIPTOR,) * signed + (record.crc, record.compressed_size, record.size):
                return following
    raise ArchiveError(f"data descriptor of [{record.name}] disagrees with the central directory or is misplaced")


def _extras(data: bytes, name: str) -> dict[int, bytes]:
    """Extra fields by id; they must fill their space exactly and each id may appear once."""
    fields: dict[int, bytes] = {}
    position = 0
    while position < len(data):
        if position + 4 > len(data):
            raise ArchiveError(f"extra field of [{name}] is malformed")
        field_id, length = struct.unpack_from("<HH", data, position)
        position += 4 + length
        if position > len(data) or field_id in fields:
            raise ArchiveError(f"extra field of [{name}] is malformed")
        fields[field_id] = data[position - length : position]
    return fields


def _widened(zip64: bytes, name: str, *values: tuple[int, int]) -> tuple[int, ...]:
    """Replace each all-ones 32/16-bit value by the next 8 (4 for the disk) bytes of the zip64 extra field, in order."""
    result = []
    position = 0
    for value, ones in values:
        if value == ones:
            width = 8 if ones == _U32 else 4
            if position + width > len(zip64):
                raise ArchiveError(f"zip64 extra field of [{name}] is missing a value")
            value = int.from_bytes(zip64[position : position + width], "little")
            position += width
        result.append(value)
    return tuple(result)


def _name(raw: bytes) -> str:
    if not raw or b"\0" in raw:
        raise ArchiveError("archive holds a record without a usable name")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"record name {raw[:64]!r} is not UTF-8") from None


def _u32_at(file: BinaryIO, offset: int) -> int:
    return int.from_bytes(_read_at(file, offset, 4), "little")


def _read_at(file: BinaryIO, offset: int, length: int) -> bytes:
    file.seek(offset)
    data = file.read(length)
    if len(data) != length:
        raise ArchiveError("archive is truncated")
    return data
