"""The mpnet, roberta, xlm_roberta and deberta_v2 tokenizers against the Hugging Face fast
tokenizer of the same tiny vocabulary, on every line of `corpus.txt`, and the places where
Elasticsearch deliberately tokenizes differently.

Each tokenizer is rebuilt from what eland uploads (tokens by id, `merges` or `scores`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from sidecar.models.tokenization import build_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    re.sub(r"\\u\{([0-9a-f]+)\}", lambda m: chr(int(m.group(1), 16)), line)
    for line in (Path(__file__).parent / "corpus.txt").read_text(encoding="utf-8").split("\n")[:-1]
]
# ASCII, single-spaced and trimmed: the lines every pipeline normalises and splits alike.
PLAIN = [text for text in CORPUS if text.isascii() and text.isprintable() and "  " not in text and text == text.strip()]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny tokenizer of each family, saved once."""
    from tests.support.models import tiny_tokenizer

    return lambda family: tiny_tokenizer(tmp_path_factory.mktemp(family), family)


def both(directory: Path, family: str, **settings):
    """The Hugging Face tokenizer saved in `directory` and ours from its uploaded vocabulary."""
    from transformers import AutoTokenizer

    from tests.support.models import uploaded_vocabulary

    reference = AutoTokenizer.from_pretrained(directory, **settings)
    ours = build_tokenizer({family: {"max_sequence_length": 100_000, **settings}}, uploaded_vocabulary(directory))
    return reference, ours


def encoded(reference, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = reference(text, return_offsets_mapping=True)
    return encoding["input_ids"], [tuple(pair) for pair in encoding["offset_mapping"]]


def rows(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    (window,) = tokenizer.tokenize(text, "first", -1)
    return window.ids, window.offsets


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("mpnet", {"do_lower_case": True}),
        ("mpnet", {"do_lower_case": False}),
        ("roberta", {"add_prefix_space": False}),
        ("roberta", {"add_prefix_space": True}),
        ("xlm_roberta", {}),
    ],
)
def test_single_texts_match_the_fast_tokenizer(saved, family, settings):
    reference, ours = both(saved(family), family, **settings)
    for text in CORPUS:
        assert rows(ours, text) == encoded(reference, text), text


def test_the_corpus_exercises_unknown_and_special_pieces(saved):
    reference, ours = both(saved("xlm_roberta"), "xlm_roberta")
    pieces = {ours.token(i) for text in CORPUS for i in rows(ours, text)[0]}
    assert {"<unk>", "▁", "▁the", "<s>", "</s>"} <= pieces


def test_xlm_roberta_normalises_with_elasticsearchs_char_map_whatever_the_model_saved():
    """Elasticsearch applies its bundled nmt_nfkc map to every XLM-RoBERTa vocabulary; a
    Hugging Face tokenizer saved without a char map does not normalise at all."""
    from transformers import XLMRobertaTokenizer

    from tests.support.models import unigram_pieces

    pieces = unigram_pieces("<s>", "<pad>", "</s>", "<unk>") + [("<mask>", 0.0)]
    reference = XLMRobertaTokenizer(vocab=pieces)
    ours = build_tokenizer({"xlm_roberta": {}}, {"vocabulary": [p for p, _ in pieces], "scores": [s for _, s in pieces]})
    for text in PLAIN:
        assert rows(ours, text) == encoded(reference, text), text
    fullwidth = "ＡＢＣ１２３ ﬁne bell\u0007s"  # NFKC folds the letters and the ligature; the bell goes
    assert [ours.token(i) for i in rows(ours, fullwidth)[0]] == [
        "<s>", "▁A", "B", "C", "1", "2", "3", "▁fine", "▁be", "l", "l", "s", "</s>"
    ]  # fmt: skip
    assert rows(ours, fullwidth)[1][6:8] == [(5, 6), (7, 10)]  # offsets stay in the original text
    assert "<unk>" in [reference.convert_ids_to_tokens(i) for i in encoded(reference, fullwidth)[0]]


def test_deberta_v2_follows_elasticsearch(saved):
    """Elasticsearch's DeBERTa-v2 tokenizer is its own port, not Hugging Face's pipeline:
    nmt_nfkc instead of NFC, words split on any whitespace (their offsets leave the space
    out, where Hugging Face's include it), and unknown characters spelt as byte pieces."""
    reference, ours = both(saved("deberta_v2"), "deberta_v2")
    known = [text for text in PLAIN if reference.unk_token_id not in encoded(reference, text)[0]]
    assert len(known) >= 3
    for text in known:
        ids, offsets = encoded(reference, text)
        word_starts = [(start + 1, end) if text[start : start + 1] == " " else (start, end) for start, end in offsets]
        assert rows(ours, text) == (ids, word_starts), text

    assert [ours.token(i) for i in rows(ours, "café\t\tﬁ")[0]] == [
        "[CLS]", "▁c", "a", "f", "<0xC3>", "<0xA9>", "▁f", "i", "[SEP]"
    ]  # fmt: skip
    assert rows(ours, "café\t\tﬁ")[1][1:8] == [(0, 1), (1, 2), (2, 3), (3, 4), (3, 4), (6, 7), (6, 7)]
    reference_pieces = reference.convert_ids_to_tokens(encoded(reference, "café")[0])
    assert "[UNK]" in reference_pieces and "<0xC3>" not in reference_pieces


def test_word_spans_follow_pre_tokenized_words(saved):
    _, ours = both(saved("roberta"), "roberta", add_prefix_space=False)
    (window,) = ours.tokenize("companies said", "first", -1)
    words = {span for span in window.word_spans[1:-1]}
    assert words == {(0, 9), (10, 14)}


def test_the_char_map_is_sentencepieces_nmt_nfkc():
    """The shipped map normalises exactly as sentencepiece's own `nmt_nfkc` rule."""
    sentencepiece = pytest.importorskip("sentencepiece")
    from tokenizers.normalizers import Precompiled

    from sidecar.models.tokenization.unigram import charsmap

    ours = Precompiled(charsmap())
    rule = sentencepiece.SentencePieceNormalizer(
        rule_name="nmt_nfkc", add_dummy_prefix=False, escape_whitespaces=False, remove_extra_whitespaces=False
    )
    for text in CORPUS:
        assert ours.normalize_str(text) == rule.Normalize(text), text
