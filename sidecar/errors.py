"""Elasticsearch-shaped errors, raised anywhere and rendered once by the API layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Exceptions that are plain Java exceptions in Elasticsearch, not ElasticsearchException subclasses: the root-cause
# guess stops descending at them (ElasticsearchException.guessRootCauses only follows Elasticsearch causes).
_PLAIN_JAVA_TYPES = frozenset(
    {
        "illegal_argument_exception",
        "illegal_state_exception",
        "number_format_exception",
        "action_request_validation_exception",
        "validation_exception",
        "x_content_parse_exception",
        "es_rejected_execution_exception",
    }
)


@dataclass
class EsError(Exception):
    """An error the caller sees exactly as Elasticsearch would render it.

    `type` is Elasticsearch's snake_case exception name, `reason` its message.
    `caused_by` nests the inner exception; `root_cause` is computed the way
    Elasticsearch guesses it (the innermost Elasticsearch exception).
    """

    status: int
    type: str
    reason: str
    caused_by: EsError | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.reason)

    def root(self) -> EsError:
        if self.caused_by is None or self.caused_by.type in _PLAIN_JAVA_TYPES:
            return self
        return self.caused_by.root()

    def body(self) -> dict[str, Any]:
        """The inner `error` object: type, reason, metadata, caused_by."""
        out: dict[str, Any] = {"type": self.type, "reason": self.reason, **self.metadata}
        if self.caused_by is not None:
            out["caused_by"] = self.caused_by.body()
        return out

    def envelope(self) -> dict[str, Any]:
        root = self.root()
        error = {"root_cause": [{"type": root.type, "reason": root.reason, **root.metadata}], **self.body()}
        return {"error": error, "status": self.status}

    def to_wire(self) -> tuple[int, str, str]:
        """A picklable summary for crossing process boundaries."""
        return (self.status, self.type, self.reason)


def status_exception(status: int, reason: str, caused_by: EsError | None = None) -> EsError:
    return EsError(status, "status_exception", reason, caused_by)


def illegal_argument(reason: str, caused_by: EsError | None = None) -> EsError:
    return EsError(400, "illegal_argument_exception", reason, caused_by)


def not_found(reason: str) -> EsError:
    return EsError(404, "resource_not_found_exception", reason)


def validation_failed(messages: list[str], type_: str = "action_request_validation_exception") -> EsError:
    """Elasticsearch's `Validation Failed: 1: a;2: b;` message (no space after `;`)."""
    text = "".join(f"{i}: {m};" for i, m in enumerate(messages, 1))
    return EsError(400, type_, f"Validation Failed: {text}")


def disk_full(index: str) -> EsError:
    """Elasticsearch's answer to a write at the flood-stage disk watermark: the index turns read-only, deletes still
    work (ClusterBlockException of the read-only-allow-delete block)."""
    block = "TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block"
    return EsError(429, "cluster_block_exception", f"index [{index}] blocked by: [{block}];")


def model_not_found(model_id: str) -> EsError:
    return not_found(f"Could not find trained model [{model_id}]")
