"""How a node logs: plain lines for people, or ECS JSON lines (`--log-format json`) for Filebeat and Elastic Agent.

One handler on the root logger serves the node's own loggers and uvicorn's alike. A line that records something
happening carries `event.action` and `event.outcome` (see `event`); every line carries `event.dataset`:
`sidecar.access` for the access log (`--access-log`), `sidecar.log` for the rest.
"""

from __future__ import annotations

import logging
import sys

import ecs_logging

LEVELS = ("critical", "error", "warning", "info", "debug")
FORMATS = ("text", "json")
ACCESS_LOGGER = "uvicorn.access"
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure(level: str, log_format: str) -> None:
    """Replace the root logger's handlers with one that writes `log_format` lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ecs_fields)
    if log_format == "json":
        handler.setFormatter(ecs_logging.StdlibFormatter(exclude_fields=["log.original"]))
    else:
        handler.setFormatter(logging.Formatter(_TEXT))
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # the Elasticsearch client logs every request, and every retry with a traceback: the node polls its cluster and
    # says in one line what a lost cluster means
    logging.getLogger("elastic_transport").setLevel(logging.DEBUG if level == "debug" else logging.ERROR)


def event(action: str, outcome: str = "success") -> dict[str, str]:
    """`extra=` for a line that records an event, e.g. `log.info(..., extra=event("deployment-started"))`."""
    return {"event.action": action, "event.outcome": outcome}


def _ecs_fields(record: logging.LogRecord) -> bool:
    """The dataset, and the access log's request fields out of uvicorn's message arguments."""
    record.__dict__.pop("color_message", None)  # uvicorn's terminal colours have no place in a shipped line
    if record.name == ACCESS_LOGGER and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, http_version, status = record.args
        record.__dict__.update(
            {
                "event.dataset": "sidecar.access",
                "client.address": client.rpartition(":")[0] or client,
                "http.request.method": method,
                "url.original": path,
                "http.version": http_version,
                "http.response.status_code": status,
            }
        )
    else:
        record.__dict__.setdefault("event.dataset", "sidecar.log")
    return True
