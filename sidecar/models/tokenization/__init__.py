"""Elasticsearch's NLP tokenizers, rebuilt from a model's uploaded vocabulary."""

from __future__ import annotations

from typing import Any

from sidecar.models.tokenization.base import NlpTokenizer, Window, kind_and_settings, validate_tokenization

__all__ = ["NlpTokenizer", "Window", "build_tokenizer"]


def build_tokenizer(tokenization: dict[str, Any], vocabulary: dict[str, Any]) -> NlpTokenizer:
    """The tokenizer for a stored `tokenization` (`{"bert": {...}}`, missing settings
    defaulted) and an uploaded `{"vocabulary": [...], ...}`. Only `bert` is served."""
    _, settings = kind_and_settings(validate_tokenization("tokenization", tokenization))
    # Imported here so that importing this package (as the API process does to
    # validate configs) never loads the `tokenizers` library.
    from sidecar.models.tokenization.bert import BertTokenizer

    return BertTokenizer(vocabulary["vocabulary"], settings)
