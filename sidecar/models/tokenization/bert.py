"""Elasticsearch's `bert` tokenization, rebuilt from an uploaded vocabulary with
Hugging Face `tokenizers` (BERT normaliser and pre-tokenizer, WordPiece)."""

from __future__ import annotations

from typing import Any

import numpy as np
from tokenizers import AddedToken, Tokenizer
from tokenizers.models import WordPiece
from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

from sidecar.errors import illegal_argument, status_exception
from sidecar.models.tokenization.base import SPECIAL, Pieces, Window, pair_lengths, split

UNK, PAD, CLS, SEP, MASK = "[UNK]", "[PAD]", "[CLS]", "[SEP]", "[MASK]"
_NEVER_SPLIT = (PAD, UNK, CLS, SEP, MASK)


class BertTokenizer:
    """Text to BERT model rows: `[CLS] text [SEP]` or `[CLS] a [SEP] b [SEP]`."""

    kind = "bert"
    num_inputs = 4
    mask_token = MASK

    def __init__(self, vocabulary: list[str], settings: dict[str, Any]) -> None:
        self._vocabulary = vocabulary
        ids = {token: i for i, token in enumerate(vocabulary)}
        self._with_special_tokens: bool = settings["with_special_tokens"]
        _require(ids, [UNK], "stored vocabulary is missing required [{}] token")
        _require(ids, [PAD], "stored vocabulary is missing required [{}] token")
        if self._with_special_tokens:
            _require(ids, [SEP, CLS], "stored vocabulary is missing required [{}] token(s)")
            self._cls, self._sep = ids[CLS], ids[SEP]
        self.pad_token_id = ids[PAD]
        self.max_sequence_length: int = settings["max_sequence_length"]
        self._tokenizer = _wordpiece(ids, settings["do_lower_case"])

    def tokenize(self, text: str, truncate: str, span: int) -> list[Window]:
        extra = 2 if self._with_special_tokens else 0
        rows = split(self._pieces(text), self.max_sequence_length, extra, truncate, span)
        return [self._single(pieces, truncated) for pieces, truncated in rows]

    def tokenize_pair(self, first: str, second: str, truncate: str) -> Window:
        if not self._with_special_tokens:
            raise illegal_argument("Unable to do sequence pair tokenization without special tokens")
        a, b = self._pieces(first), self._pieces(second)
        keep_a, keep_b, truncated = pair_lengths(len(a), len(b), self.max_sequence_length, 3, truncate)
        a, b = a.cut(0, keep_a), b.cut(0, keep_b)
        return Window(
            [self._cls, *a.ids, self._sep, *b.ids, self._sep],
            [SPECIAL, *a.offsets, SPECIAL, *b.offsets, SPECIAL],
            truncated,
            [SPECIAL, *a.word_spans, SPECIAL, *b.word_spans, SPECIAL],
        )

    def model_inputs(self, rows: list[Window]) -> tuple[np.ndarray, ...]:
        """Right-padded `(input_ids, attention_mask, token_type_ids, position_ids)`.

        As Elasticsearch writes them: the attention mask is padded with the pad
        token id (0 for BERT, so the usual mask), token types are all 0 even for
        pairs (Elasticsearch never writes segment 1), positions run 0..L-1.
        """
        width = max(len(row.ids) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row.ids)] = row.ids
            attention_mask[i, : len(row.ids)] = 1
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        position_ids = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1))
        return input_ids, attention_mask, token_type_ids, position_ids

    def token(self, token_id: int) -> str:
        return self._vocabulary[token_id]

    def _pieces(self, text: str) -> Pieces:
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        spans: dict[int, tuple[int, int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets):
            first = spans.get(word, (start, end))
            spans[word] = (first[0], end)
        return Pieces(encoding.ids, encoding.offsets, [spans[word] for word in encoding.word_ids])

    def _single(self, pieces: Pieces, truncated: bool) -> Window:
        if not self._with_special_tokens:
            return Window(pieces.ids, pieces.offsets, truncated, pieces.word_spans)
        return Window(
            [self._cls, *pieces.ids, self._sep],
            [SPECIAL, *pieces.offsets, SPECIAL],
            truncated,
            [SPECIAL, *pieces.word_spans, SPECIAL],
        )


def _require(ids: dict[str, int], tokens: list[str], message: str) -> None:
    """Elasticsearch refuses to deploy with a 409 when a required token is missing."""
    missing = [token for token in tokens if token not in ids]
    if missing:
        raise status_exception(409, message.format(", ".join(missing)))


def _wordpiece(ids: dict[str, int], lower_case: bool) -> Tokenizer:
    """The same pipeline `transformers.BertTokenizerFast` builds from a vocab file."""
    tokenizer = Tokenizer(WordPiece(ids, unk_token=UNK, max_input_chars_per_word=100))
    tokenizer.normalizer = BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lower_case, lowercase=lower_case
    )
    tokenizer.pre_tokenizer = BertPreTokenizer()
    specials = [AddedToken(token, normalized=False, special=True) for token in _NEVER_SPLIT if token in ids]
    tokenizer.add_special_tokens(specials)
    return tokenizer
