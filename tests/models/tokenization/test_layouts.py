"""Elasticsearch's rules for the mpnet, roberta, xlm_roberta and deberta_v2 kinds: special
token layouts, pair truncation and windows, graph inputs and padding, required tokens, the
PUT-time settings, and how fill_mask writes a vocabulary entry back as text."""

from __future__ import annotations

import os

import numpy as np
import pytest

from sidecar.errors import EsError
from sidecar.models.tokenization import build_tokenizer
from sidecar.models.tokenization.base import validate_tokenization

os.environ.setdefault("HF_HUB_OFFLINE", "1")

FAMILIES = ("mpnet", "roberta", "xlm_roberta", "deberta_v2")


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    """What eland uploads for each tiny tokenizer."""
    from tests.support.models import tiny_tokenizer, uploaded_vocabulary

    return {family: uploaded_vocabulary(tiny_tokenizer(tmp_path_factory.mktemp(family), family)) for family in FAMILIES}


def tokenizer(uploads, family: str, **settings):
    return build_tokenizer({family: settings}, uploads[family])


def tokens(tok, window) -> list[str]:
    return [tok.token(i) for i in window.ids]


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("mpnet", ["<s>", "the", "city", "</s>", "</s>", "paris", "</s>"]),
        ("roberta", ["<s>", "th", "e", "Ġcit", "y", "</s>", "</s>", "p", "ar", "is", "</s>"]),
        ("xlm_roberta", ["<s>", "▁the", "▁city", "</s>", "</s>", "▁paris", "</s>"]),
        ("deberta_v2", ["[CLS]", "▁the", "▁city", "[SEP]", "▁paris", "[SEP]"]),
    ],
)
def test_pair_layouts(uploads, family, expected):
    tok = tokenizer(uploads, family)
    window = tok.tokenize_pair("the city", "paris", "first")
    assert tokens(tok, window) == expected
    assert window.second_start == len(expected) - 1 - len(tok.tokenize("paris", "first", -1)[0].ids) + 2
    assert window.offsets[window.second_start][0] == 0  # offsets of the second text are into the second text
    assert not window.is_truncated


@pytest.mark.parametrize(("family", "inputs"), [("mpnet", 2), ("roberta", 2), ("xlm_roberta", 2), ("deberta_v2", 3)])
def test_graph_inputs_are_padded_as_elasticsearch_writes_them(uploads, family, inputs):
    """The attention mask's padding is the pad id, not 0: 1 for these vocabularies."""
    tok = tokenizer(uploads, family)
    rows = [*tok.tokenize("paris", "first", -1), tok.tokenize_pair("the", "paris city", "first")]
    arrays = tok.model_inputs(rows)
    assert len(arrays) == tok.num_inputs == inputs
    short, wide = len(rows[0].ids), len(rows[1].ids)
    assert arrays[0][0].tolist() == rows[0].ids + [tok.pad_token_id] * (wide - short)
    assert arrays[1].tolist() == [[1] * short + [tok.pad_token_id] * (wide - short), [1] * wide]
    assert tok.pad_token_id == (0 if family == "deberta_v2" else 1)
    if inputs == 3:
        assert arrays[2].tolist() == [[0] * wide] * 2  # token types all 0, even for the pair
    assert {array.dtype for array in arrays} == {np.dtype(np.int64)}


@pytest.mark.parametrize(
    ("truncate", "expected"),
    [
        ("first", ["<s>", "▁the", "</s>", "</s>", "▁city", "▁of", "▁paris", "</s>"]),
        ("second", ["<s>", "▁the", "▁city", "▁of", "</s>", "</s>", "▁city", "</s>"]),
    ],
)
def test_pair_truncation_counts_four_special_tokens(uploads, truncate, expected):
    tok = tokenizer(uploads, "xlm_roberta", max_sequence_length=8)
    window = tok.tokenize_pair("the city of", "city of paris", truncate)
    assert (tokens(tok, window), window.is_truncated) == (expected, True)


def test_single_text_truncation_and_refusal(uploads):
    tok = tokenizer(uploads, "roberta", max_sequence_length=4)
    (window,) = tok.tokenize("the city of paris", "second", -1)
    assert (tokens(tok, window), window.is_truncated) == (["<s>", "th", "e", "</s>"], True)
    with pytest.raises(EsError, match=r"input length \[9\] exceeds the maximum sequence length \[4\]"):
        tok.tokenize("the city of paris", "none", -1)


def test_windows_keep_words_whole(uploads):
    """Words are split into byte-level pieces ("the" is th e): no window ends inside one."""
    tok = tokenizer(uploads, "roberta", max_sequence_length=5, truncate="none", span=1)
    windows = tok.tokenize("the city paris of", "none", 1)
    assert [tokens(tok, window)[1:-1] for window in windows] == [
        ["th", "e"], ["e", "Ġcit", "y"], ["Ġcit", "y"], ["y", "Ġpar", "is"], ["Ġpar", "is", "Ġof"]
    ]  # fmt: skip


def test_pair_windows_repeat_the_first_text(uploads):
    tok = tokenizer(uploads, "deberta_v2", max_sequence_length=7, truncate="none", span=1)
    windows = tok.tokenize_pair_windows("who", "the city of paris is big", "none", 1)
    assert [tokens(tok, window) for window in windows] == [
        ["[CLS]", "▁who", "[SEP]", "▁the", "▁city", "▁of", "[SEP]"],
        ["[CLS]", "▁who", "[SEP]", "▁of", "▁paris", "▁is", "[SEP]"],
        ["[CLS]", "▁who", "[SEP]", "▁is", "▁big", "[SEP]"],
    ]
    assert [window.offsets[3] for window in windows] == [(0, 3), (9, 11), (18, 20)]


@pytest.mark.parametrize(
    ("span", "status", "reason"),
    [
        (3, 400, "Unable to do sequence pair tokenization: the combined first sequence, span length and delimiting "
                  "tokens [2 + 3 + 3 = 8 tokens] is longer than the max sequence length [7 tokens]. "
                  "Reduce the size of the [span] window."),
        (2, 500,
         "Tokenization cannot be satisfied with the current span setting. Consider decreasing the span setting"),
    ],
)
def test_pair_windows_that_cannot_be_made(uploads, span, status, reason):
    tok = tokenizer(uploads, "deberta_v2", max_sequence_length=7, truncate="none", span=span)
    with pytest.raises(EsError) as error:
        tok.tokenize_pair_windows("who is", "the city of paris is big", "none", span)
    assert (error.value.status, error.value.reason) == (status, reason)
    with pytest.raises(EsError, match=r"the first sequence \[9 tokens\] is longer than the max sequence length \[7"):
        tok.tokenize_pair_windows("who is the city of paris", "big", "none", 1)


def test_deberta_pairs_need_two_texts(uploads):
    with pytest.raises(EsError, match=r"^Both sequences must have at least one token$"):
        tokenizer(uploads, "deberta_v2").tokenize_pair("", "paris", "first")


@pytest.mark.parametrize(
    ("family", "token", "decoded"),
    [
        ("mpnet", "paris", "paris"),
        ("roberta", "Ġcity", "city"),
        ("xlm_roberta", "▁city", "city"),
        ("deberta_v2", "▁city", "▁city"),
    ],
)
def test_mask_tokens_and_decoding(uploads, family, token, decoded):
    tok = tokenizer(uploads, family)
    assert tok.mask_token == ("[MASK]" if family == "deberta_v2" else "<mask>")
    assert tok.token(tok.mask_token_id) == tok.mask_token
    assert tok.decode(token) == decoded


def test_roberta_decodes_bytes_to_text(uploads):
    tok = tokenizer(uploads, "roberta")
    assert tok.decode("Ġcaf" + "Ã©") == "café"


@pytest.mark.parametrize(
    ("family", "removed", "reason"),
    [
        ("mpnet", "[UNK]", "stored vocabulary is missing required [[UNK]] token"),
        ("roberta", "<pad>", "stored vocabulary is missing required [<pad>] token"),
        ("xlm_roberta", "</s>", "stored vocabulary is missing required [</s>] token(s)"),
        ("deberta_v2", "[CLS]", "stored vocabulary is missing required [[CLS]] token(s)"),
    ],
)
def test_required_tokens(uploads, family, removed, reason):
    upload = uploads[family]
    kept = [i for i, token in enumerate(upload["vocabulary"]) if token != removed]
    pruned = {key: [values[i] for i in kept] for key, values in upload.items() if key != "merges"}
    with pytest.raises(EsError) as error:
        build_tokenizer({family: {}}, {**upload, **pruned})
    assert (error.value.status, error.value.type, error.value.reason) == (409, "status_exception", reason)


def test_scores_must_match_the_vocabulary(uploads):
    upload = uploads["xlm_roberta"]
    with pytest.raises(EsError) as error:
        build_tokenizer({"xlm_roberta": {}}, {**upload, "scores": upload["scores"][:3]})
    size = len(upload["vocabulary"])
    assert error.value.reason == f"provided vocabulary [{size}] and scores [3] must have the same size"


def test_stored_settings():
    assert validate_tokenization("x", {"roberta": {"add_prefix_space": True}}) == {
        "roberta": {"do_lower_case": False, "with_special_tokens": True, "max_sequence_length": 512,
                    "truncate": "first", "span": -1, "add_prefix_space": True}
    }  # fmt: skip
    assert list(validate_tokenization("x", {"xlm_roberta": {}})["xlm_roberta"]) == [
        "do_lower_case", "with_special_tokens", "max_sequence_length", "truncate", "span"
    ]  # fmt: skip
    assert validate_tokenization("x", {"deberta_v2": {"do_lower_case": True}})["deberta_v2"]["do_lower_case"] is True
    assert validate_tokenization("x", {"mpnet": {"do_lower_case": True}})["mpnet"]["do_lower_case"] is True


@pytest.mark.parametrize(
    ("tokenization", "type_", "reason"),
    [
        ({"roberta": {"do_lower_case": True}}, "illegal_argument_exception",
         "unable to set [do_lower_case] to [true] for roberta tokenizer"),
        ({"xlm_roberta": {"do_lower_case": True}}, "illegal_argument_exception",
         "unable to set [do_lower_case] to [true] for XLMRoberta tokenizer"),
        ({"roberta": {"add_prefix_space": "yes"}}, "x_content_parse_exception",
         "[roberta_tokenization] failed to parse field [add_prefix_space]"),
        ({"mpnet": {"add_prefix_space": True}}, "x_content_parse_exception",
         "[mpnet_tokenization] unknown field [add_prefix_space]"),
        ({"xlm_roberta": {"stride": 1}}, "x_content_parse_exception",
         "[xlm_roberta_tokenization] unknown field [stride]"),
        ({"deberta_v2": {"stride": 1}}, "x_content_parse_exception", "[deberta_v2] unknown field [stride]"),
        ({"deberta_v2": {"span": 3}}, "illegal_argument_exception",
         "[span] must not be provided when [truncate] is [first]"),
    ],
)
def test_invalid_settings(tokenization, type_, reason):
    with pytest.raises(EsError) as error:
        validate_tokenization("x", tokenization)
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)
