"""Query parameters with Elasticsearch semantics: typed reads, and unread parameters rejected by name."""

from __future__ import annotations

from collections.abc import Mapping

from sidecar.errors import EsError, illegal_argument
from sidecar.timevalue import TimeValue, parse_time

# Read by every handler (RestRequest / AbstractRestChannel); never "unrecognized".
GLOBAL_PARAMS = ("pretty", "human", "error_trace", "filter_path", "format")


class Params:
    """Typed access to a request's query string that remembers which names a handler read.

    Elasticsearch rejects any parameter its handler did not consume; `finish()` does the same with the
    same message, including the `did you mean` hint.
    """

    def __init__(self, path: str, query: Mapping[str, str]) -> None:
        self._path = path
        self._query = query
        self._consumed: set[str] = set(GLOBAL_PARAMS)

    def __contains__(self, name: str) -> bool:
        self._consumed.add(name)
        return name in self._query

    def str(self, name: str, default: str | None = None) -> str | None:
        self._consumed.add(name)
        return self._query.get(name, default)

    def int(self, name: str, default: int | None = None) -> int | None:
        raw = self.str(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            cause = EsError(400, "number_format_exception", f'For input string: "{raw}"')
            raise illegal_argument(f"Failed to parse int parameter [{name}] with value [{raw}]", cause) from None

    def bool(self, name: str, default: bool = False) -> bool:
        raw = self.str(name)
        if raw is None:
            return default
        return parse_bool(raw)

    def time(self, name: str, default: str) -> TimeValue:
        return parse_time(self.str(name, default) or default, name)

    def finish(self) -> None:
        """Raise Elasticsearch's `contains unrecognized parameter` error for anything left unread."""
        unknown = sorted(set(self._query) - self._consumed)
        if not unknown:
            return
        noun = "parameter" if len(unknown) == 1 else "parameters"
        parts = ", ".join(f"[{name}]{_suggestion(name, self._consumed)}" for name in unknown)
        raise illegal_argument(f"request [{self._path}] contains unrecognized {noun}: {parts}")


def parse_bool(raw: str) -> bool:
    """Booleans.parseBoolean: only `true`/`false`; a bare flag (`?force`) counts as true."""
    if raw in ("", "true"):
        return True
    if raw == "false":
        return False
    raise illegal_argument(f"Failed to parse value [{raw}] as only [true] or [false] are allowed.")


def _suggestion(name: str, candidates: set[str]) -> str:
    scored = sorted(
        ((_similarity(name, c), c) for c in candidates if _similarity(name, c) > 0.5),
        key=lambda pair: (-pair[0], pair[1]),
    )
    if not scored:
        return ""
    if len(scored) == 1:
        return f" -> did you mean [{scored[0][1]}]?"
    return " -> did you mean any of [" + ", ".join(c for _, c in scored) + "]?"


def _similarity(a: str, b: str) -> float:
    """Lucene's LevenshteinDistance: 1 - distance / max(length)."""
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))
