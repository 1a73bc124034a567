"""Elasticsearch's NLP tokenizers, rebuilt from a model's uploaded vocabulary."""

from __future__ import annotations

from typing import Any

from sidecar.models.tokenization.base import NlpTokenizer, Window, kind_and_settings, validate_tokenization

__all__ = ["NlpTokenizer", "Window", "build_tokenizer"]


def build_tokenizer(tokenization: dict[str, Any], vocabulary: dict[str, Any]) -> NlpTokenizer:
    """The tokenizer for a stored `tokenization` (`{"roberta": {...}}`, missing settings
    defaulted) and an uploaded `{"vocabulary": [...], "merges"?: [...], "scores"?: [...]}`."""
    kind, settings = kind_and_settings(validate_tokenization("tokenization", tokenization))
    # Imported here so that importing this package (as the API process does to
    # validate configs) never loads the `tokenizers` library.
    from sidecar.models.tokenization.bert import BertTokenizer
    from sidecar.models.tokenization.byte_level_bpe import ByteLevelBpeTokenizer
    from sidecar.models.tokenization.deberta_v2 import DebertaV2Tokenizer
    from sidecar.models.tokenization.mpnet import MPNetTokenizer
    from sidecar.models.tokenization.roberta import RobertaTokenizer
    from sidecar.models.tokenization.xlm_roberta import XLMRobertaTokenizer

    kinds = (BertTokenizer, MPNetTokenizer, RobertaTokenizer, XLMRobertaTokenizer, DebertaV2Tokenizer, ByteLevelBpeTokenizer)
    return {tokenizer.kind: tokenizer for tokenizer in kinds}[kind](vocabulary, settings)
