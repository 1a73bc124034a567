"""The model id eland derives from `--hub-model-id` when none is given."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s/\\]")
_MAX_LENGTH = 64


def default_model_id(hub_model_id: str) -> str:
    """Whitespace and path separators become `__`, lower-cased, the last 64 characters kept.

    A long local path thus keeps its most telling end (the model's own folder name), and
    the `__` left by a leading `/` is dropped because ids may not start with `_`.
    """
    model_id = _SEPARATORS.sub("__", hub_model_id).lower()[-_MAX_LENGTH:]
    return model_id.removeprefix("__")
