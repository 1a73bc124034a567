"""What the CPU offers for reduced precision: the flags the node reads from /proc/cpuinfo once and hands to its
workers (which cannot read /proc once confined), and torch's own check, made in the worker."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

BF16_FLAGS = ("amx_bf16", "avx512_bf16")  # bf16 matrix multiplies in hardware (AMX tiles, AVX512 dot products)
PRECISION_FLAGS = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni")
"""The flags that matter for reduced precision; the others are not reported."""


@cache
def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The reduced-precision flags of the first CPU listed; none where the file cannot be read (not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return frozenset(line.partition(":")[2].split()) & frozenset(PRECISION_FLAGS)


def bf16_support(flags: frozenset[str], torch: Any) -> str | None:
    """Why bf16 cannot run at full speed here, or None when it can: a flag must say so, and torch must agree."""
    if not flags & frozenset(BF16_FLAGS):
        return f"this CPU has none of {', '.join(BF16_FLAGS)}"
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None and not check():
        return "torch's oneDNN build has no bf16 kernels for this CPU"
    return None
