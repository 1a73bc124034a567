"""A node's settings: everything `sidecar serve` can be told, with the defaults users expect."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.models.safety import DEFAULT_MAX_NODES


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 9700
    data_dir: Path = Path("data")  # `sidecar serve` reads SIDECAR_DATA_DIR as it reads every SIDECAR_<OPTION>
    node_name: str = field(default_factory=socket.gethostname)
    cluster_name: str = "elasticsearch"
    es_version: str = "9.2.0"  # eland 9 refuses servers that report less than 9
    store: str | None = None  # `sqlite:<file>`; default: the SQLite file in data_dir
    # input bounds
    max_body_bytes: int = 100 * 1024 * 1024  # http.max_content_length
    max_header_bytes: int = 16 * 1024  # http.max_header_size: the request line and headers together
    # network.breaker.inflight_requests.limit: request bytes held at once, all connections together. Elasticsearch
    # derives it from its heap; the node has none, its memory is the workers': room for one body of max_body_bytes
    # (whose parsing takes as much again) and the small calls around it
    max_in_flight_bytes: int = 128 * 1024 * 1024
    http_read_timeout_s: float = 30.0  # a request's head must arrive within it; its body must keep coming
    http_idle_timeout_s: float = 60.0  # a keep-alive connection without a request is closed after it
    max_docs_per_request: int = 1000
    max_text_chars: int = 1_000_000
    # batching
    max_batch_docs: int = 32
    max_batch_tokens: int = 8192
    # model safety
    trusted_models: frozenset[str] = frozenset()
    max_graph_nodes: int = DEFAULT_MAX_NODES
    # precision: auto (each worker probes), fp32 or bf16; a deployment's `precision` on _start wins
    precision: str = "auto"
    cpu_flags: frozenset[str] | None = None  # what the workers are told the CPU offers (default: /proc/cpuinfo's)
    # cluster
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 10.0
    advertise_url: str | None = None
    cores: tuple[int, ...] | None = None  # CPUs this node's workers may use (default: all this process may use)
    # the Elasticsearch cluster this node sits next to (inference endpoints, pipelines, caller auth)
    es_url: str | None = None
    es_api_key: str | None = None
    es_user: str | None = None
    es_password: str | None = None
    es_ca_certs: Path | None = None
    callback_secret: str | None = None  # what the cluster must send on callbacks; generated when connected
    insecure: bool = False  # allow binding beyond loopback without any authentication

    def claims(self, version: str) -> bool:
        """Whether the claimed Elasticsearch version is `version` or later: messages and shapes follow it."""
        return _release(self.es_version) >= _release(version)

    @property
    def url(self) -> str:
        return self.advertise_url or f"http://{self.host}:{self.port}"

    @property
    def store_path(self) -> Path:
        if self.store and self.store.startswith("sqlite:"):
            return Path(self.store.removeprefix("sqlite:"))
        return self.data_dir / "sidecar.db"


def _release(version: str) -> tuple[int, ...]:
    """`9.2.0` (or `9.2.0-SNAPSHOT`) as numbers that compare as releases do."""
    return tuple(int(part) for part in version.split("-", 1)[0].split(".")[:3])
