"""Elasticsearch's `deberta_v2` tokenization: sentencepiece Unigram with byte fallback,
BERT's special tokens, and token types as a third graph input."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer

from sidecar.errors import illegal_argument
from sidecar.models.tokenization.base import Pieces, Window
from sidecar.models.tokenization.rows import RowTokenizer
from sidecar.models.tokenization.unigram import never_split, unigram


class DebertaV2Tokenizer(RowTokenizer):
    """`[CLS] text [SEP]` or `[CLS] a [SEP] b [SEP]`."""

    kind = "deberta_v2"
    num_inputs = 3
    cls_token, sep_token, pad_token, unk_token = "[CLS]", "[SEP]", "[PAD]", "[UNK]"

    def pipeline(self, upload: dict[str, Any], ids: dict[str, int], settings: dict[str, Any]) -> Tokenizer:
        tokenizer = unigram(self._vocabulary, upload.get("scores") or [], ids[self.unk_token], byte_fallback=True)
        tokenizer.add_special_tokens(never_split(ids, "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"))
        return tokenizer

    def _pair(self, first: Pieces, second: Pieces, truncated: bool) -> Window:
        if not len(first) or not len(second):
            raise illegal_argument("Both sequences must have at least one token")
        return super()._pair(first, second, truncated)
