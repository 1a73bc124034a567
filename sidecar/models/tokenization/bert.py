"""Elasticsearch's `bert` tokenization, rebuilt from an uploaded vocabulary with
Hugging Face `tokenizers` (BERT normaliser and pre-tokenizer, WordPiece)."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from sidecar.models.tokenization.rows import RowTokenizer, special_tokens


class BertTokenizer(RowTokenizer):
    """Text to BERT model rows: `[CLS] text [SEP]` or `[CLS] a [SEP] b [SEP]`."""

    kind = "bert"
    num_inputs = 4
    cls_token, sep_token, pad_token, unk_token = "[CLS]", "[SEP]", "[PAD]", "[UNK]"

    def pipeline(self, upload: dict[str, Any], ids: dict[str, int], settings: dict[str, Any]) -> Tokenizer:
        tokenizer = wordpiece(ids, self.unk_token, settings["do_lower_case"])
        tokenizer.add_special_tokens(special_tokens(ids, "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"))
        return tokenizer


def wordpiece(ids: dict[str, int], unk_token: str, lower_case: bool) -> Tokenizer:
    """The same pipeline `transformers` builds for BERT-style vocabularies."""
    tokenizer = Tokenizer(WordPiece(ids, unk_token=unk_token, max_input_chars_per_word=100))
    tokenizer.normalizer = BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lower_case, lowercase=lower_case
    )
    tokenizer.pre_tokenizer = BertPreTokenizer()
    return tokenizer
