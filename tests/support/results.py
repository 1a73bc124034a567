"""Comparing result JSON in tests."""

from __future__ import annotations

from typing import Any


def rounded(value: Any) -> Any:
    """Floats rounded to 6 places, all the way down, so results compare without float noise."""
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rounded(item) for item in value]
    return value
