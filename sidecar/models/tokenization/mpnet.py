"""Elasticsearch's `mpnet` tokenization: BERT's WordPiece with RoBERTa-style special
tokens, `<s> a </s></s> b </s>` for pairs."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer

from sidecar.models.tokenization.bert import wordpiece
from sidecar.models.tokenization.rows import RowTokenizer, special_tokens


class MPNetTokenizer(RowTokenizer):
    kind = "mpnet"
    num_inputs = 2
    # `[UNK]`, not `<unk>`: the unknown token Elasticsearch and Hugging Face both use for MPNet.
    cls_token, sep_token, pad_token, unk_token = "<s>", "</s>", "<pad>", "[UNK]"
    pair_separators = 2

    def pipeline(self, upload: dict[str, Any], ids: dict[str, int], settings: dict[str, Any]) -> Tokenizer:
        tokenizer = wordpiece(ids, self.unk_token, settings["do_lower_case"])
        tokens = special_tokens(ids, "<s>", "</s>", "<pad>", "[UNK]", "<mask>", lstrip=("<mask>",))
        tokenizer.add_special_tokens(tokens)
        return tokenizer
