"""The second wall around a worker: whatever a model gets to run, the worker reads only what Python and torch need,
writes only its scratch directory, reaches no TCP port, and signals or connects to no process outside itself.

Landlock, through `landlockpy`: unprivileged, needs no root or helper binary, and rights the kernel lacks are dropped
rather than failing. It applies to the calling thread and to threads started after it, so a worker confines itself
before torch loads and starts its thread pools. Where Landlock is missing (not Linux, kernel before 5.13, disabled at
boot) the worker runs unconfined and says so in its READY message and the node's log.

What the worker may read: the interpreter's and the installed packages' directories, this package, system libraries,
the CPU topology torch asks for, and the one definition file it holds open. Not the node's data directory (the
store, the callback secret, other models), not /proc of other processes nor its own /proc entries (the environment
can carry secrets).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from typing import BinaryIO

import sidecar

_SYSTEM_READABLE = (
    "/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/localtime",
    "/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu", "/sys/fs/cgroup",
)  # fmt: skip
_DEVICES = ("/dev/null", "/dev/urandom")


def confine(scratch: Path, definition: BinaryIO) -> str:
    """Confine this process for good; returns how, for the READY message (`landlock ABI 7` or `none: why`)."""
    import landlockpy
    from landlockpy import AccessFS, AccessNet, RestrictFlag, Ruleset, Scope

    abi = landlockpy.abi_version()
    if abi < 1:
        return "none: the kernel does not provide Landlock"
    read = AccessFS.READ_FILE | AccessFS.READ_DIR | AccessFS.EXECUTE
    tcp = AccessNet.BIND_TCP | AccessNet.CONNECT_TCP
    with Ruleset(scoped=Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL, handled_net=tcp) as ruleset:
        for path in _readable():
            ruleset.allow_path(path, read if os.path.isdir(path) else read & ~AccessFS.READ_DIR)
        for device in _DEVICES:
            ruleset.allow_path(device, AccessFS.READ_FILE | AccessFS.WRITE_FILE)
        # The open file itself, not its path: a rule on an inode covers exactly that file, whatever its name becomes.
        ruleset.allow_path(f"/proc/self/fd/{definition.fileno()}", AccessFS.READ_FILE)
        ruleset.allow_path(scratch, ruleset.handled_fs)
        ruleset.restrict(RestrictFlag.TSYNC)
        handled = [name for name, right in (("files", ruleset.handled_fs), ("tcp", ruleset.handled_net)) if right]
        scoped = ["ipc"] if ruleset.scoped else []
    return f"landlock ABI {abi}: {', '.join(handled + scoped)}"


def _readable() -> list[str]:
    """Existing directories Python and torch load code and data from (no search path: it can hold the data dir)."""
    paths = sysconfig.get_paths()
    code = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    code |= {sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)}
    code.add(str(Path(sidecar.__file__).parent))
    return sorted(path for path in code | set(_SYSTEM_READABLE) if os.path.exists(path) and path != "/")
