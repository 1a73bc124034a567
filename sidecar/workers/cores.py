"""Which CPUs this node may use, and how workers share them."""

from __future__ import annotations

import math
import os


def cores_for(index: int, threads: int, cores: list[int]) -> tuple[int, ...]:
    """Worker `index` gets `threads` cores of its own, wrapping round robin when there are too few."""
    return tuple(cores[(index * threads + j) % len(cores)] for j in range(threads))


def usable_cores() -> list[int]:
    """CPUs this process may use: the affinity mask, cut down to the cgroup CPU quota."""
    cores = sorted(os.sched_getaffinity(0))
    quota = _cgroup_quota()
    if quota is not None and quota < len(cores):
        cores = cores[: max(1, math.ceil(quota))]
    return cores


def _cgroup_quota() -> float | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            limit, period = f.read().split()
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            limit = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        return None if limit <= 0 else limit / period
    except (OSError, ValueError):
        return None
