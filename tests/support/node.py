"""Real sidecar nodes for tests: a `sidecar serve` process on a free loopback port, and a client for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

_START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NodeProcess:
    """One node, started and stopped the way a person would, its log kept for failing tests."""

    def __init__(self, data_dir: Path, *args: str, name: str = "node-1", port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.name = name
        # fp32 unless a test asks about precision: answers compared with transformers' and timings stay the same on
        # every CPU (a bf16-capable one would otherwise serve bf16 after its probe)
        asks_precision = any(arg.startswith(("--precision", "--cpu-flags")) for arg in args)
        self.args = args if asks_precision else (*args, "--precision", "fp32")
        self.log_path = data_dir.parent / f"{data_dir.name}-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> NodeProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "sidecar", "serve", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), "--node-name", self.name, *self.args]
        log = open(self.log_path, "ab")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"node did not start:\n{self.log()}")

    def client(self, **options: object) -> Elasticsearch:
        """The official client, with a timeout above the server-side timeouts the tests use."""
        return Elasticsearch(self.url, request_timeout=120, **options)  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def module_node(*args: str):  # noqa: ANN201 - returns a pytest fixture
    """A module-scoped fixture running one node with `args`, for a test folder's conftest."""

    @pytest.fixture(scope="module")
    def node(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN202
        process = NodeProcess(tmp_path_factory.mktemp("node") / "data", *args).start()
        yield process
        process.stop()

    return node
