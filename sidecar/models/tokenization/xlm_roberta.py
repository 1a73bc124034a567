"""Elasticsearch's `xlm_roberta` tokenization: sentencepiece Unigram, RoBERTa's special tokens."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer

from sidecar.models.tokenization.rows import RowTokenizer
from sidecar.models.tokenization.unigram import never_split, unigram

PREFIX = "▁"


class XLMRobertaTokenizer(RowTokenizer):
    """`<s> text </s>` or `<s> a </s></s> b </s>`."""

    kind = "xlm_roberta"
    num_inputs = 2
    cls_token, sep_token, pad_token, unk_token = "<s>", "</s>", "<pad>", "<unk>"
    pair_separators = 2

    def pipeline(self, upload: dict[str, Any], ids: dict[str, int], settings: dict[str, Any]) -> Tokenizer:
        tokenizer = unigram(self._vocabulary, upload.get("scores") or [], ids[self.unk_token], byte_fallback=False)
        tokenizer.add_special_tokens(never_split(ids, "<mask>"))
        return tokenizer

    def decode(self, token: str) -> str:
        """Without the word-start marker."""
        return token.removeprefix(PREFIX)
