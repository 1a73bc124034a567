"""A virtualenv of its own for eland 9.2, built once and reused by later test runs.

eland 9.2 pins torch 2.7.1 and breaks on transformers 5, so it cannot live in the project's environment:
it gets torch 2.13.0 with transformers 4.57 beside it, and eland itself without its dependency pins.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = (
    "torch==2.13.0",
    "transformers[sentencepiece]==4.57.*",
    "sentence-transformers==5.*",
    "elasticsearch==9.*",
    "pandas<3",
    "numpy<3",
    "matplotlib",
    "requests",
    "tqdm",
    "packaging",
)
ELAND = "eland==9.2.0"  # installed without its dependencies: its own pins cannot be met beside torch 2.13.0
_KEY = hashlib.sha256(repr((sys.version_info[:2], REQUIREMENTS, ELAND)).encode()).hexdigest()[:16]
_STAMP = ".sidecar-eland-key"  # written last: a venv without it (or with another key) is rebuilt
_DEFAULT_ROOT = Path.home() / ".cache" / "sidecar" / "eland-venv"


@dataclass(frozen=True)
class ElandEnv:
    """The built virtualenv: its interpreter and its console scripts."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def script(self, name: str) -> Path:
        return self.root / "bin" / name


def eland_env() -> ElandEnv:
    """The eland virtualenv at `$SIDECAR_ELAND_VENV` (or the user's cache), built first if missing or stale."""
    env = ElandEnv(Path(os.environ.get("SIDECAR_ELAND_VENV") or _DEFAULT_ROOT))
    with _locked(env.root.with_name(env.root.name + ".lock")):
        if not _is_current(env):
            _build(env)
    return env


def _is_current(env: ElandEnv) -> bool:
    stamp = env.root / _STAMP
    return stamp.is_file() and stamp.read_text().strip() == _KEY and env.python.exists()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serializes builders across processes: a parallel test run waits, then finds the venv built."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(env: ElandEnv) -> None:
    started = time.monotonic()
    shutil.rmtree(env.root, ignore_errors=True)
    _run("creating the eland virtualenv", sys.executable, "-m", "venv", str(env.root))
    pip = (str(env.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check")
    _run("installing eland's dependencies", *pip, *REQUIREMENTS)
    _run(f"installing {ELAND}", *pip, "--no-deps", ELAND)
    _run("importing eland.ml.pytorch in the eland virtualenv", str(env.python), "-c", "import eland.ml.pytorch")
    (env.root / _STAMP).write_text(_KEY + "\n")
    print(f"eland virtualenv built in {time.monotonic() - started:.0f}s at {env.root}", file=sys.stderr)


def _run(step: str, *command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{step} failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-4000:]}")
