"""Elasticsearch's `roberta` tokenization: byte-level BPE from the uploaded `merges`."""

from __future__ import annotations

from typing import Any

from tokenizers import Tokenizer, decoders, processors
from tokenizers.models import BPE
from tokenizers.pre_tokenizers import ByteLevel

from sidecar.models.tokenization.rows import RowTokenizer, special_tokens

_JAVA_TRIMMED = "".join(map(chr, range(33)))  # what Java's String.trim() removes


class RobertaTokenizer(RowTokenizer):
    """`<s> text </s>` or `<s> a </s></s> b </s>`; `add_prefix_space` treats the first word like any other."""

    kind = "roberta"
    num_inputs = 2
    cls_token, sep_token, pad_token, unk_token = "<s>", "</s>", "<pad>", "<unk>"
    pair_separators = 2

    def pipeline(self, upload: dict[str, Any], ids: dict[str, int], settings: dict[str, Any]) -> Tokenizer:
        merges = [tuple(merge.split(" ", 1)) for merge in upload.get("merges") or []]
        tokenizer = Tokenizer(BPE(ids, merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
        prefix = settings["add_prefix_space"]
        tokenizer.pre_tokenizer = ByteLevel(add_prefix_space=prefix)
        # Offsets leave out the space a piece carries, as Hugging Face reports them.
        tokenizer.post_processor = processors.ByteLevel(add_prefix_space=prefix, trim_offsets=True)
        # Elasticsearch drops the whitespace before `<mask>`, as Hugging Face's lstrip does.
        tokens = special_tokens(
            ids, self.cls_token, self.pad_token, self.sep_token, self.unk_token, self.mask_token, lstrip=(self.mask_token,)
        )
        tokenizer.add_special_tokens(tokens)
        return tokenizer

    def decode(self, token: str) -> str:
        """Bytes back to text, trimmed: the mask never carries the space before the predicted word."""
        return decoders.ByteLevel().decode([token]).strip(_JAVA_TRIMMED)
