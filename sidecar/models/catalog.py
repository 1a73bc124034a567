"""Finding stored models by id or expression, as Elasticsearch resolves them (the built-in model included)."""

from __future__ import annotations

import asyncio
import fnmatch
from collections.abc import Mapping
from typing import Any

from sidecar.errors import model_not_found
from sidecar.models.config import BUILTIN_LANG_IDENT
from sidecar.store.base import Store


def all_models(store: Store) -> list[dict[str, Any]]:
    """Stored configs plus Elasticsearch's built-in language identification model, sorted by id."""
    return sorted([*store.list_models(), BUILTIN_LANG_IDENT], key=lambda m: m["model_id"])


def match_models(
    models: list[dict[str, Any]], expression: str, allow_no_match: bool, aliases: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Resolve `id`, `a,b`, `m*`, `_all` or `*` the way Elasticsearch's id expander does: a pattern matching a
    model alias (alias -> model id) matches the model it names."""
    patterns = [p.strip() for p in expression.split(",") if p.strip()]
    if not patterns or patterns in (["_all"], ["*"]):
        return models
    matched: list[dict[str, Any]] = []
    for pattern in patterns:
        named = {model_id for alias, model_id in (aliases or {}).items() if fnmatch.fnmatchcase(alias, pattern)}
        hits = [m for m in models if fnmatch.fnmatchcase(m["model_id"], pattern) or m["model_id"] in named]
        if not hits and ("*" not in pattern or not allow_no_match):
            raise model_not_found(pattern)
        matched += [m for m in hits if m not in matched]
    return sorted(matched, key=lambda m: m["model_id"])


async def model_or_404(store: Store, model_id: str) -> dict[str, Any]:
    """A stored config, or the built-in model, or Elasticsearch's 404."""
    if model_id == BUILTIN_LANG_IDENT["model_id"]:
        return BUILTIN_LANG_IDENT
    config = await asyncio.to_thread(store.get_model, model_id)
    if config is None:
        raise model_not_found(model_id)
    return config
