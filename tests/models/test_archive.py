"""The archive check reads a definition as exactly one well-formed archive, as torch will, or refuses it."""

import io
import zipfile
import zlib
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from sidecar.models.archive import MAX_RATIO, ArchiveError, contents, read_records
from sidecar.models.safety import UnsafeModelError, load_checked
from tests.support.zips import Entry, build, deflated, entries_of, stored

BOMB_BYTES = (4 << 30) - (1 << 20)  # just under 4 GiB: the largest size without zip64 fields


class Plain(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x + 1


class WritesOnLoad(nn.Module):
    """Writes a file from `__setstate__`: torch runs it while loading the archive."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: Tensor) -> Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = state[1]
        torch.ops.aten.save(torch.ones(1), self.target)


def saved(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), path)
    return path


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def records_of(data: bytes) -> list[bytes]:
    """Every record's contents, as the check reads them."""
    file = io.BytesIO(data)
    return [b"".join(contents(file, record)) for record in read_records(file)]


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return saved(Plain(), tmp_path / "clean.pt")


def test_a_clean_archive_prepended_to_a_hostile_one_is_refused(tmp_path: Path, clean: Path) -> None:
    """torch reads the hostile archive at the end by its absolute offsets; the check must not see only the first."""
    target = tmp_path / "written-at-load"
    hostile = entries_of(saved(WritesOnLoad(str(target)), tmp_path / "hostile.pt"))
    prefix = clean.read_bytes()
    combined = written(tmp_path / "combined.pt", prefix + build(hostile, start=len(prefix)))

    with pytest.raises(UnsafeModelError, match=r"not a readable TorchScript archive: archive has a gap or overlap"):
        load_checked(combined)
    assert not target.exists()

    torch.jit.load(combined)  # what the check prevented: torch runs the hostile hook
    assert target.exists()


def test_a_clean_archive_appended_to_a_hostile_one_is_refused(tmp_path: Path, clean: Path) -> None:
    target = tmp_path / "written-at-load"
    hostile = saved(WritesOnLoad(str(target)), tmp_path / "hostile.pt").read_bytes()
    combined = written(tmp_path / "combined.pt", hostile + build(entries_of(clean), start=len(hostile)))

    with pytest.raises(UnsafeModelError, match=r"gap or overlap before the first record"):
        load_checked(combined)
    assert not target.exists()


def test_trailing_bytes_after_the_archive_are_refused(clean: Path) -> None:
    with pytest.raises(ArchiveError, match="no end of central directory record at its end"):
        records_of(clean.read_bytes() + b"\0" * 64)


def test_names_equal_but_for_case_are_refused(clean: Path) -> None:
    entries = entries_of(clean)
    twin = next(entry for entry in entries if entry.name.endswith("/data.pkl"))
    entries.append(stored(twin.name.replace("data.pkl", "DATA.pkl"), b"other"))

    with pytest.raises(ArchiveError, match=r"holds record \[.*/DATA\.pkl\] twice"):
        records_of(build(entries))


def test_local_header_must_agree_with_the_central_directory(clean: Path) -> None:
    data = bytearray(build(entries_of(clean)))
    data[30] ^= 0x20  # the first letter of the first record's name in its local header

    with pytest.raises(ArchiveError, match=r"local header of \[.*\] disagrees with the central directory"):
        records_of(bytes(data))


@pytest.mark.parametrize(
    ("change", "message"),
    [({"flags": 0x0001}, "is encrypted"), ({"method": 12}, r"unsupported compression method \[12\]")],
    ids=["encrypted", "bzip2"],
)
def test_encrypted_and_unknown_methods_are_refused(clean: Path, change: dict, message: str) -> None:
    entries = entries_of(clean)
    entries[0] = Entry(**{**entries[0].__dict__, **change})

    with pytest.raises(ArchiveError, match=message):
        records_of(build(entries))


def zeros_deflated(total: int) -> bytes:
    """A deflate stream of `total` zero bytes, built without deflating them all: after a full flush no block refers
    back, so the block for one mebibyte can be repeated."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    step = 1 << 20
    first = packer.compress(b"\0" * step) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(b"\0" * step) + packer.flush(zlib.Z_FULL_FLUSH)
    return first + block * (total // step - 1) + packer.flush()


def test_a_bomb_declaring_its_size_is_refused_before_inflating(clean: Path) -> None:
    """A 4 MB definition whose extra record would inflate to 4 GiB: refused from its headers alone."""
    bomb = Entry("clean/extra/notes", zeros_deflated(BOMB_BYTES), BOMB_BYTES, 0, method=8)

    refusal = rf"would inflate \[\d+\] bytes to \[{BOMB_BYTES}\], more than \[{MAX_RATIO}\] times"
    with pytest.raises(ArchiveError, match=refusal):
        records_of(build([*entries_of(clean), bomb]))


def test_a_bomb_understating_its_size_stops_inflating_at_the_declared_size(clean: Path) -> None:
    stream = zeros_deflated(BOMB_BYTES)
    bomb = Entry("clean/extra/notes", stream, len(stream) * 2, 0, method=8)

    with pytest.raises(ArchiveError, match=rf"holds more than its declared \[{len(stream) * 2}\] bytes"):
        records_of(build([*entries_of(clean), bomb]))


def test_zip64_records_and_deflated_records_are_read(clean: Path) -> None:
    """Large definitions carry zip64 fields; torch deflates its code records."""
    payloads = {entry.name: bytes(entry.data) for entry in entries_of(clean)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, payload in payloads.items():
            with archive.open(name, "w", force_zip64=True) as out:
                out.write(payload)
    deflate = deflated("clean/extra/code.py", b"def f():\n    return 1\n" * 50)

    assert records_of(buffer.getvalue()) == list(payloads.values())
    assert records_of(build([deflate])) == [b"def f():\n    return 1\n" * 50]


def test_the_checked_file_is_the_loaded_file(tmp_path: Path, clean: Path) -> None:
    """Replacing the definition's path after it was opened changes nothing: torch reads the open file."""
    path = tmp_path / "model.pt"
    path.write_bytes(clean.read_bytes())
    with open(path, "rb") as definition:
        saved(WritesOnLoad(str(tmp_path / "written-at-load")), tmp_path / "swap.pt").replace(path)
        module = load_checked(definition)

    assert module(torch.zeros(1)).item() == 1.0
    assert not (tmp_path / "written-at-load").exists()
