"""Tokenizer-independent pieces: model input rows, Elasticsearch's truncation and
windowing rules, and the `tokenization` config those rules read.

Nothing here imports `tokenizers`, so the API process can validate configs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sidecar.errors import EsError, illegal_argument, status_exception

SPECIAL = (0, 0)
"""Offsets (and word span) of a special token such as `[CLS]`."""

TRUNCATE = ("first", "second", "none")
DEFAULTS: dict[str, Any] = {
    "do_lower_case": False,
    "with_special_tokens": True,
    "max_sequence_length": 512,
    "truncate": "first",
    "span": -1,
}
_TYPES = {
    "do_lower_case": bool,
    "with_special_tokens": bool,
    "max_sequence_length": int,
    "truncate": str,
    "span": int,
}


@dataclass(frozen=True)
class Kind:
    """What a `tokenization` kind accepts at PUT, as Elasticsearch's parser for it does."""

    parser: str  # the parser name Elasticsearch's field errors start with
    mask_token: str
    extra: tuple[tuple[str, type, Any], ...] = ()  # the kind's own settings (name, type, default), written last
    lower_case_refused_by: str | None = None  # tokenizer name in the `do_lower_case` refusal
    since: str = "8.0.0"  # the first Elasticsearch release that knows the kind (older ones refuse it at PUT)
    unserved: str | None = None  # why a config of this kind is stored but cannot be deployed here


_JAPANESE_UNSERVED = (
    "[bert_ja] tokenization cannot be deployed on this node: Elasticsearch splits Japanese text into words with "
    "Lucene's Kuromoji tokenizer in search mode, which no Python word splitter reproduces, and a model given other "
    "words would answer differently"
)
_BYTE_LEVEL_TOKENS = tuple(
    (name, str, default)
    for name, default in (("unk_token", "<unk>"), ("pad_token", "<pad>"), ("bos_token", "<s>"), ("eos_token", "</s>"))
)
KINDS: dict[str, Kind] = {
    "bert": Kind("bert_tokenization", "[MASK]"),
    "mpnet": Kind("mpnet_tokenization", "<mask>"),
    "roberta": Kind("roberta_tokenization", "<mask>", (("add_prefix_space", bool, False),), "roberta"),
    "xlm_roberta": Kind("xlm_roberta_tokenization", "<mask>", (), "XLMRoberta"),
    "deberta_v2": Kind("deberta_v2", "[MASK]"),
    "bert_ja": Kind("bert_japanese_tokenization", "[MASK]", since="8.9.0", unserved=_JAPANESE_UNSERVED),  # #95546
    # ByteLevelBpeTokenization: its transport version (9377000) lies between the 9.4 and 9.5 upper bounds read;
    # the first release being 9.5 is UNCONFIRMED
    "byte_level_bpe": Kind(
        "byte_level_bpe_tokenization",
        "<mask>",
        (("add_prefix_space", bool, False), *_BYTE_LEVEL_TOKENS, ("mask_token", str, "<mask>")),
        "byte_level_bpe",
        since="9.5.0",
    ),
}
# Elasticsearch's map-based update parser lists only bert, mpnet and roberta; its REST parser takes every
# registered kind, so every kind served here can be updated (the error lists them all, sorted).
_UPDATE_KINDS = tuple(sorted(name for name, kind in KINDS.items() if kind.unserved is None))


@dataclass
class Window:
    """One model input row.

    `offsets` are char offsets into the original text (for a pair, into the text
    the token came from). `word_spans` gives, per token, the span of the whole
    word it belongs to: Elasticsearch's token-to-word map, which keeps words whole
    when windowing and lets NER report whole words even when a window ends mid-word.
    `second_start` is where a pair row's second text begins (question answering
    reads its answer from there); 0 for a single text.
    """

    ids: list[int]
    offsets: list[tuple[int, int]]
    is_truncated: bool = False
    word_spans: list[tuple[int, int]] = field(default_factory=list)
    second_start: int = 0


class NlpTokenizer(Protocol):
    kind: str
    num_inputs: int
    pad_token_id: int
    mask_token: str
    mask_token_id: int | None
    max_sequence_length: int

    def tokenize(self, text: str, truncate: str, span: int) -> list[Window]: ...

    def tokenize_pair(self, first: str, second: str, truncate: str) -> Window: ...

    def tokenize_pair_windows(self, first: str, second: str, truncate: str, span: int) -> list[Window]: ...

    def model_inputs(self, rows: list[Window]) -> tuple[np.ndarray, ...]: ...

    def token(self, token_id: int) -> str: ...

    def decode(self, token: str) -> str: ...


@dataclass
class Pieces:
    """A text's word pieces before special tokens are added."""

    ids: list[int]
    offsets: list[tuple[int, int]]
    word_spans: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.ids)

    def cut(self, start: int, end: int) -> Pieces:
        return Pieces(self.ids[start:end], self.offsets[start:end], self.word_spans[start:end])

    def same_word(self, i: int) -> bool:
        """Whether piece `i` continues the word of piece `i - 1`."""
        return self.word_spans[i] == self.word_spans[i - 1]

    @classmethod
    def special(cls, ids: list[int]) -> Pieces:
        return cls(ids, [SPECIAL] * len(ids), [SPECIAL] * len(ids))

    @classmethod
    def join(cls, *parts: Pieces) -> Pieces:
        return cls(
            [i for part in parts for i in part.ids],
            [o for part in parts for o in part.offsets],
            [w for part in parts for w in part.word_spans],
        )


def too_large(length: int, limit: int) -> EsError:
    return status_exception(
        400, f"Input too large. The tokenized input length [{length}] exceeds the maximum sequence length [{limit}]"
    )


def split(pieces: Pieces, limit: int, extra: int, truncate: str, span: int) -> list[tuple[Pieces, bool]]:
    """Elasticsearch's single-text rule: fit `limit` tokens, `extra` of them special,
    by truncating, refusing, or cutting overlapping windows.

    Returns the pieces of each row and whether that row was truncated.
    """
    room = limit - extra
    if len(pieces) <= room:
        return [(pieces, False)]
    if truncate != "none":
        return [(pieces.cut(0, room), True)]
    if span == -1:
        raise too_large(len(pieces) + extra, limit)
    return [(pieces.cut(start, end), False) for start, end in _windows(pieces, room, span)]


def _windows(pieces: Pieces, room: int, span: int, refuse_stall: bool = False) -> list[tuple[int, int]]:
    """Window bounds: a window never ends inside a word, and the next one starts `span` pieces back, moved to
    the start of a word. A span that leaves no progress is refused for a pair's second text, as Elasticsearch
    refuses it; a single text moves on by one piece instead (Elasticsearch would loop forever there)."""
    bounds: list[tuple[int, int]] = []
    start = end = 0
    while end < len(pieces):
        end = min(start + room, len(pieces))
        if end != len(pieces):
            while end > start + 1 and pieces.same_word(end):
                end -= 1
        bounds.append((start, end))
        previous, start = start, end - span
        if start <= previous:
            if refuse_stall:
                raise EsError(
                    500,
                    "illegal_state_exception",
                    "Tokenization cannot be satisfied with the current span setting. Consider decreasing the span "
                    "setting",
                )
            start = previous + 1
        if start < len(pieces):
            while start > previous + 1 and pieces.same_word(start):
                start -= 1
    return bounds


def split_pair(
    first: Pieces, second: Pieces, limit: int, extra: int, truncate: str, span: int
) -> list[tuple[Pieces, Pieces, bool]]:
    """Elasticsearch's pair rule with windows: a pair that does not fit is truncated,
    or, with a span, the second text is cut into overlapping windows that each
    repeat the whole first text (how question answering reads long contexts).
    """
    if len(first) + len(second) + extra <= limit:
        return [(first, second, False)]
    if span < 0:
        keep_a, keep_b, truncated = pair_lengths(len(first), len(second), limit, extra, truncate)
        return [(first.cut(0, keep_a), second.cut(0, keep_b), truncated)]
    room = limit - extra - len(first)
    if room <= 0:
        raise illegal_argument(
            f"Unable to do sequence pair tokenization: the first sequence [{len(first) + extra} tokens] "
            f"is longer than the max sequence length [{limit} tokens]"
        )
    if span > room:
        raise illegal_argument(
            "Unable to do sequence pair tokenization: the combined first sequence, span length and delimiting tokens "
            f"[{len(first)} + {span} + {extra} = {len(first) + span + extra} tokens] is longer than the max sequence "
            f"length [{limit} tokens]. Reduce the size of the [span] window."
        )
    return [(first, second.cut(start, end), False) for start, end in _windows(second, room, span, refuse_stall=True)]


def pair_lengths(first: int, second: int, limit: int, extra: int, truncate: str) -> tuple[int, int, bool]:
    """How many pieces of each text fit one pair row, and whether any were cut."""
    room = limit - extra
    if first + second <= room:
        return first, second, False
    if truncate == "none":
        raise too_large(first + second + extra, limit)
    other, which = (second, "second") if truncate == "first" else (first, "first")
    if other > room:
        raise status_exception(
            400,
            f"Attempting truncation [{truncate}] but input is too large for the {which} sequence. "
            f"The tokenized input length [{other}] exceeds the maximum sequence length [{room}], "
            "when taking special tokens into account",
        )
    return (room - second, second, True) if truncate == "first" else (first, room - first, True)


def parse_failure(owner: str, field_name: str) -> EsError:
    """Elasticsearch's object-parser error for a value of the wrong type.

    The real reason starts with the JSON position (`[1:42] `), which is not known here.
    """
    return EsError(400, "x_content_parse_exception", f"[{owner}] failed to parse field [{field_name}]")


def unknown_field(owner: str, field_name: str) -> EsError:
    return EsError(400, "x_content_parse_exception", f"[{owner}] unknown field [{field_name}]")


def typed(owner: str, values: dict[str, Any], name: str, kind: type) -> Any:
    """`values[name]` if present and of JSON type `kind` (booleans are not ints)."""
    value = values.get(name)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise parse_failure(owner, name)
    return value


def parse_truncate(value: Any) -> str:
    """Elasticsearch upper-cases and looks the value up in its enum."""
    text = str(value).lower()
    if text not in TRUNCATE:
        raise illegal_argument(
            "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization.Truncate."
            + str(value).upper()
        )
    return text


def kind_and_settings(tokenization: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Unwraps `{"bert": {...}}`."""
    ((kind, settings),) = tokenization.items()
    return kind, settings


def mask_token(tokenization: dict[str, Any]) -> str:
    """The mask token of a stored `tokenization`: its kind's, unless the kind lets the config name it."""
    kind, settings = kind_and_settings(tokenization)
    return settings.get("mask_token") or KINDS[kind].mask_token


def check_released(tokenization: Any, claims: Callable[[str], bool]) -> None:
    """A kind newer than the claimed Elasticsearch release is as unknown as it is to that release."""
    if isinstance(tokenization, dict) and len(tokenization) == 1:
        name = next(iter(tokenization))
        if name in KINDS and not claims(KINDS[name].since):
            raise _unknown_kind(name)


def check_served(tokenization: dict[str, Any]) -> None:
    """A stored kind this node cannot run is refused at `_start`, saying why."""
    reason = KINDS[kind_and_settings(tokenization)[0]].unserved
    if reason is not None:
        raise status_exception(400, reason)


def _unknown_kind(name: str) -> EsError:
    return illegal_argument(f"unknown tokenization type [{name}]")


def validate_tokenization(owner: str, tokenization: Any) -> dict[str, Any]:
    """The stored form of a PUT `tokenization`: one kind, every setting written."""
    if tokenization is None:
        return {"bert": dict(DEFAULTS)}
    if not isinstance(tokenization, dict) or len(tokenization) != 1:
        raise parse_failure(owner, "tokenization")
    name, given = kind_and_settings(tokenization)
    if name not in KINDS:
        raise _unknown_kind(name)
    if not isinstance(given, dict):
        raise parse_failure(owner, "tokenization")
    kind = KINDS[name]
    types = {**_TYPES, **{field_name: type_ for field_name, type_, _ in kind.extra}}
    for field_name in given:
        if field_name not in types:
            raise unknown_field(kind.parser, field_name)
    settings = {field_name: typed(kind.parser, given, field_name, type_) for field_name, type_ in types.items()}
    if settings["truncate"] is not None:
        settings["truncate"] = parse_truncate(settings["truncate"])
    defaults = {**DEFAULTS, **{field_name: default for field_name, _, default in kind.extra}}
    settings = {field_name: defaults[field_name] if _unset(value) else value for field_name, value in settings.items()}
    _check_settings(settings)
    if kind.lower_case_refused_by and settings["do_lower_case"]:
        raise illegal_argument(f"unable to set [do_lower_case] to [true] for {kind.lower_case_refused_by} tokenizer")
    return {name: settings}


def _unset(value: Any) -> bool:
    """Absent, or (for a token a config may name) blank, which Elasticsearch reads as its default."""
    return value is None or (isinstance(value, str) and not value.strip())


def _check_settings(settings: dict[str, Any]) -> None:
    """Elasticsearch's Tokenization constructor checks, in its order."""
    length, span, truncate = settings["max_sequence_length"], settings["span"], settings["truncate"]
    if length <= 0:
        raise illegal_argument("[max_sequence_length] must be positive")
    if span < -1:
        raise illegal_argument(
            "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should occur"
        )
    if span > length:
        raise illegal_argument(
            f"[span] provided [{span}] must not be greater than [max_sequence_length] provided [{length}]"
        )
    _check_span_and_truncate(truncate, span)


def _check_span_and_truncate(truncate: str | None, span: int | None) -> None:
    if span is not None and span != -1 and truncate not in (None, "none"):
        raise illegal_argument(f"[span] must not be provided when [truncate] is [{truncate}]")


def update_tokenization(owner: str, tokenization: dict[str, Any], update: Any) -> dict[str, Any]:
    """Applies an infer-time `tokenization` override (only `truncate` and `span`)."""
    requested = _requested(owner, update)
    if requested is None:
        return tokenization
    requested_kind, truncate, span = requested
    kind, settings = kind_and_settings(tokenization)
    if requested_kind != kind:
        raise status_exception(
            400, f"Tokenization config of type [{kind}] can not be updated with a request of type [{requested_kind}]"
        )
    _check_span_and_truncate(truncate, span)
    if truncate == "none":
        # Elasticsearch drops the span whenever an update sets truncate to none.
        return {kind: {**settings, "truncate": "none", "span": -1}}
    updated = {
        **settings,
        "truncate": truncate or settings["truncate"],
        "span": settings["span"] if span is None else span,
    }
    _check_settings(updated)
    return {kind: updated}


def _requested(owner: str, update: Any) -> tuple[str, str | None, int | None] | None:
    """`(kind, truncate, span)` asked for, read as Elasticsearch's map-based update
    parser does (other keys inside the kind are ignored); None when nothing is."""
    if update is None:
        return None
    if not isinstance(update, dict):
        raise parse_failure(owner, "tokenization")
    known = [kind for kind in _UPDATE_KINDS if kind in update]
    if not known:
        if update:
            raise status_exception(
                400,
                f"unknown tokenization type expecting one of [{', '.join(_UPDATE_KINDS)}] got [{', '.join(update)}]",
            )
        return None
    requested = update[known[0]]
    if not isinstance(requested, dict):
        raise parse_failure(owner, "tokenization")
    truncate = None if requested.get("truncate") is None else parse_truncate(requested["truncate"])
    span = typed(f"{known[0]}_tokenization_update", requested, "span", int)
    return None if truncate is None and span is None else (known[0], truncate, span)
