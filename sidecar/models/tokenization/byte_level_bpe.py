"""Elasticsearch's `byte_level_bpe` tokenization: RoBERTa's byte-level BPE and row layout, its special tokens named
by the config (GPT-2 style vocabularies name them differently)."""

from __future__ import annotations

from typing import Any

from sidecar.models.tokenization.roberta import RobertaTokenizer


class ByteLevelBpeTokenizer(RobertaTokenizer):
    """`bos text eos` or `bos a eos eos b eos`, with the tokens the config names (RoBERTa's by default)."""

    kind = "byte_level_bpe"

    def __init__(self, upload: dict[str, Any], settings: dict[str, Any]) -> None:
        self.cls_token, self.sep_token = settings["bos_token"], settings["eos_token"]
        self.pad_token, self.unk_token = settings["pad_token"], settings["unk_token"]
        super().__init__(upload, settings)
