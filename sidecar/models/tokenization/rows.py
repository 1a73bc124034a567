"""What every served tokenizer shares: text to word pieces with a Hugging Face
`tokenizers` pipeline, then Elasticsearch's special tokens, truncation, windows
and padding around them. Each kind only names its tokens and builds its pipeline."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from tokenizers import AddedToken, Tokenizer

from sidecar.errors import illegal_argument, status_exception
from sidecar.models.tokenization.base import Pieces, Window, mask_token, split, split_pair


class RowTokenizer:
    """Model rows for one tokenization kind: `cls text sep`, or for a pair
    `cls a sep b sep` with `pair_separators` separators between the texts."""

    kind: ClassVar[str]
    num_inputs: ClassVar[int]
    cls_token: ClassVar[str]
    sep_token: ClassVar[str]
    pad_token: ClassVar[str]
    unk_token: ClassVar[str]
    pair_separators: ClassVar[int] = 1

    def __init__(self, upload: dict[str, Any], settings: dict[str, Any]) -> None:
        self._vocabulary: list[str] = upload["vocabulary"]
        ids = {token: i for i, token in enumerate(self._vocabulary)}
        self._with_special_tokens: bool = settings["with_special_tokens"]
        _require(ids, [self.unk_token], "stored vocabulary is missing required [{}] token")
        _require(ids, [self.pad_token], "stored vocabulary is missing required [{}] token")
        if self._with_special_tokens:
            _require(ids, [self.sep_token, self.cls_token], "stored vocabulary is missing required [{}] token(s)")
            self._cls, self._sep = ids[self.cls_token], ids[self.sep_token]
        self.mask_token: str = mask_token({self.kind: settings})
        self.mask_token_id: int | None = ids.get(self.mask_token)
        self.pad_token_id: int = ids[self.pad_token]
        self.max_sequence_length: int = settings["max_sequence_length"]
        self._pipeline = self.pipeline(upload, ids, settings)

    def pipeline(self, upload: dict[str, Any], ids: dict[str, int], settings: dict[str, Any]) -> Tokenizer:
        """The kind's normaliser, pre-tokenizer and model, special tokens added."""
        raise NotImplementedError

    def tokenize(self, text: str, truncate: str, span: int) -> list[Window]:
        extra = 2 if self._with_special_tokens else 0
        rows = split(self._pieces(text), self.max_sequence_length, extra, truncate, span)
        return [self._single(pieces, truncated) for pieces, truncated in rows]

    def tokenize_pair(self, first: str, second: str, truncate: str) -> Window:
        (row,) = self.tokenize_pair_windows(first, second, truncate, -1)
        return row

    def tokenize_pair_windows(self, first: str, second: str, truncate: str, span: int) -> list[Window]:
        """One row, or with a span one row per window of `second`, each led by the whole of `first`."""
        if not self._with_special_tokens:
            raise illegal_argument("Unable to do sequence pair tokenization without special tokens")
        a, b = self._pieces(first), self._pieces(second)
        extra = 2 + self.pair_separators
        rows = split_pair(a, b, self.max_sequence_length, extra, truncate, span)
        return [self._pair(x, y, truncated) for x, y, truncated in rows]

    def model_inputs(self, rows: list[Window]) -> tuple[np.ndarray, ...]:
        """Right-padded `(input_ids, attention_mask, token_type_ids, position_ids)`, as many as the graph takes.

        As Elasticsearch writes them, not as Hugging Face would: the attention mask
        is padded with the pad token id (0 for BERT, so the usual mask, but 1 for
        RoBERTa-style vocabularies), token types are all 0 even for pairs, and
        positions run 0..L-1.
        """
        width = max(len(row.ids) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.full((len(rows), width), self.pad_token_id, dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : len(row.ids)] = row.ids
            attention_mask[i, : len(row.ids)] = 1
        token_type_ids = np.zeros((len(rows), width), dtype=np.int64)
        position_ids = np.tile(np.arange(width, dtype=np.int64), (len(rows), 1))
        return (input_ids, attention_mask, token_type_ids, position_ids)[: self.num_inputs]

    def token(self, token_id: int) -> str:
        return self._vocabulary[token_id]

    def decode(self, token: str) -> str:
        """A vocabulary entry as text, where fill_mask writes a prediction."""
        return token

    def _pieces(self, text: str) -> Pieces:
        encoding = self._pipeline.encode(text, add_special_tokens=False)
        spans: dict[int | None, tuple[int, int]] = {}
        for word, (start, end) in zip(encoding.word_ids, encoding.offsets):
            first = spans.get(word, (start, end))
            spans[word] = (first[0], end)
        return Pieces(encoding.ids, encoding.offsets, [spans[word] for word in encoding.word_ids])

    def _single(self, pieces: Pieces, truncated: bool) -> Window:
        if self._with_special_tokens:
            pieces = Pieces.join(Pieces.special([self._cls]), pieces, Pieces.special([self._sep]))
        return Window(pieces.ids, pieces.offsets, truncated, pieces.word_spans)

    def _pair(self, first: Pieces, second: Pieces, truncated: bool) -> Window:
        lead = Pieces.join(Pieces.special([self._cls]), first, Pieces.special([self._sep] * self.pair_separators))
        row = Pieces.join(lead, second, Pieces.special([self._sep]))
        return Window(row.ids, row.offsets, truncated, row.word_spans, second_start=len(lead))


def special_tokens(ids: dict[str, int], *tokens: str, lstrip: tuple[str, ...] = ()) -> list[AddedToken]:
    """The kind's special tokens present in the vocabulary, matched before normalisation,
    as Hugging Face registers them (`lstrip` ones also take the space before them)."""
    return [
        AddedToken(token, normalized=False, special=True, lstrip=token in lstrip) for token in tokens if token in ids
    ]


def _require(ids: dict[str, int], tokens: list[str], message: str) -> None:
    """Elasticsearch refuses to deploy with a 409 when a required token is missing."""
    missing = [token for token in tokens if token not in ids]
    if missing:
        raise status_exception(409, message.format(", ".join(missing)))
