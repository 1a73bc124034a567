"""Elasticsearch time values: `500ms`, `20s`, `1m`, parsed and printed the way TimeValue does."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sidecar.errors import EsError, illegal_argument

_UNITS: list[tuple[str, float]] = [  # suffix, seconds; parse order matters (`ms` before `s`)
    ("nanos", 1e-9),
    ("micros", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
]
_PRINT_UNITS = [("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3), ("micros", 1e-6)]


@dataclass(frozen=True)
class TimeValue:
    """A duration that remembers the text it was parsed from (Elasticsearch echoes that form)."""

    seconds: float
    text: str

    def __str__(self) -> str:
        return format_seconds(self.seconds)


def format_seconds(seconds: float) -> str:
    """TimeValue.toString(): the largest unit >= 1, one truncated decimal, `.0` dropped."""
    if seconds < 0:
        return "-1"
    if seconds == 0:
        return "0s"
    for suffix, size in _PRINT_UNITS:
        if seconds >= size:
            value = int(round(seconds / size * 10, 6)) / 10  # truncate to one decimal, tolerate float noise
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text}{suffix}"
    return f"{int(seconds * 1e9)}nanos"


def iso_micros(micros: int) -> str:
    """`2021-11-02T11:50:34.766591Z`, as `_start` prints its start time."""
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_millis(millis: int) -> str:
    """`2022-03-02T14:50:27.493Z`, the `*_string` twins `?human=true` adds to epoch-millis fields."""
    return iso_micros(millis * 1000)[:-4] + "Z"


def parse_time(text: str, setting: str) -> TimeValue:
    """Parse like TimeValue.parseTimeValue; errors carry Elasticsearch's exact messages."""
    lowered = text.strip().lower()
    for suffix, size in _UNITS:
        if suffix == "m" and not text.strip().endswith("m"):  # `m` is case-sensitive on the original
            continue
        if lowered.endswith(suffix):
            return TimeValue(_number(lowered[: -len(suffix)], text, setting) * size, text)
    if re.fullmatch(r"-0*1", lowered):
        return TimeValue(-1.0, text)
    if re.fullmatch(r"0+", lowered):
        return TimeValue(0.0, text)
    raise illegal_argument(
        f"failed to parse setting [{setting}] with value [{text}] as a time value: unit is missing or unrecognized"
    )


def _number(digits: str, original: str, setting: str) -> float:
    digits = digits.strip()
    try:
        value = int(digits)
    except ValueError:
        cause = EsError(400, "number_format_exception", f'For input string: "{digits}"')
        if re.fullmatch(r"-?\d*\.\d+", digits):
            raise illegal_argument(f"failed to parse [{original}], fractional time values are not supported", cause)
        raise illegal_argument(f"failed to parse [{original}]", cause)
    if value < 0 and value != -1:
        raise illegal_argument(
            f"failed to parse setting [{setting}] with value [{original}] as a time value: "
            "negative durations are not supported"
        )
    return float(value)
