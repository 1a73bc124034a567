"""The sentencepiece Unigram pipeline Elasticsearch uses for `xlm_roberta` and
`deberta_v2`, rebuilt from an uploaded vocabulary and its `scores`."""

from __future__ import annotations

import lzma
from functools import cache
from pathlib import Path

from tokenizers import AddedToken, Tokenizer
from tokenizers.models import Unigram
from tokenizers.normalizers import Precompiled
from tokenizers.pre_tokenizers import Metaspace, Sequence, WhitespaceSplit

from sidecar.errors import illegal_argument

# sentencepiece's `nmt_nfkc` rule compiled to a char map (NFKC, control characters
# dropped, odd spaces made plain), the normaliser Elasticsearch ships and applies
# to every Unigram vocabulary. The uploaded vocabulary carries no normaliser, so a
# model's own (Hugging Face uses the one saved with the model) is never used.
CHARSMAP = Path(__file__).with_name("nmt_nfkc.charsmap.xz")


def unigram(vocabulary: list[str], scores: list[float], unk_id: int, byte_fallback: bool) -> Tokenizer:
    """Normalise, split on whitespace, mark each word with `▁`, then the best-scoring pieces.

    With `byte_fallback` an unknown character becomes its UTF-8 byte pieces (`<0xE2>`).
    """
    if len(scores) != len(vocabulary):
        raise illegal_argument(
            f"provided vocabulary [{len(vocabulary)}] and scores [{len(scores)}] must have the same size"
        )
    tokenizer = Tokenizer(Unigram(list(zip(vocabulary, scores)), unk_id=unk_id, byte_fallback=byte_fallback))
    tokenizer.normalizer = Precompiled(charsmap())
    tokenizer.pre_tokenizer = Sequence([WhitespaceSplit(), Metaspace(replacement="▁", prepend_scheme="always")])
    return tokenizer


def never_split(ids: dict[str, int], *tokens: str) -> list[AddedToken]:
    """Tokens Elasticsearch cuts out of the text before normalising (its never-split list)."""
    return [AddedToken(token, normalized=False, special=True) for token in tokens if token in ids]


@cache
def charsmap() -> bytes:
    return lzma.decompress(CHARSMAP.read_bytes())
