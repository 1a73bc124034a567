"""One node per data dir: an exclusive lock on `<data dir>/node.lock`, held for the life of the process.

Two nodes on one data dir would share one node id and overwrite each other's routing entries and counters. The lock
is the kernel's (`flock`), so a crash or `kill -9` releases it with the process; a stale file is no obstacle.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

LOCK_FILE = "node.lock"


class NodeLocked(Exception):
    """Another process holds the data dir, or the lock file cannot be made."""


def lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Take the data dir's lock; keep the returned file open for as long as the node runs."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = open(data_dir / LOCK_FILE, "ab")  # stays open: closing it would release the lock
    except OSError:
        raise NodeLocked(_message(data_dir)) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise NodeLocked(_message(data_dir)) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n".encode())  # for a person looking: which process holds it
    handle.flush()
    return handle


def _message(data_dir: Path) -> str:
    """NodeEnvironment's wording, with this node's single data path."""
    return (
        f"failed to obtain node locks, tried [{data_dir.resolve()}]; maybe these locations are not writable or "
        "multiple nodes were started on the same data path?"
    )
