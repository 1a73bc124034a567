"""Elasticsearch's `byte_level_bpe` kind: RoBERTa's byte-level BPE and rows with the special tokens a config names."""

from __future__ import annotations

import os

import pytest

from sidecar.errors import EsError
from sidecar.models.tokenization import build_tokenizer
from sidecar.models.tokenization.base import mask_token, validate_tokenization

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TEXTS = ["the city of paris", "  spaced   out  ", "café <mask> déjà vu", "numbers 12345 and symbols #!?"]
GPT_STYLE = {"<s>": "<|bos|>", "</s>": "<|eos|>", "<pad>": "<|pad|>", "<unk>": "<|unk|>", "<mask>": "<|mask|>"}
NAMED = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>",
         "mask_token": "<|mask|>"}  # fmt: skip


@pytest.fixture(scope="module")
def upload(tmp_path_factory):
    from tests.support.models import tiny_tokenizer, uploaded_vocabulary

    return uploaded_vocabulary(tiny_tokenizer(tmp_path_factory.mktemp("roberta"), "roberta"))


def renamed(upload):
    """The same vocabulary with GPT-2 style names for its special tokens, at the same ids."""
    return {**upload, "vocabulary": [GPT_STYLE.get(token, token) for token in upload["vocabulary"]]}


def build(kind, upload, **settings):
    return build_tokenizer(validate_tokenization("x", {kind: settings}), upload)


@pytest.mark.parametrize("prefix", [False, True])
def test_default_tokens_tokenize_as_roberta(upload, prefix):
    ours, roberta = build("byte_level_bpe", upload, add_prefix_space=prefix), build("roberta", upload, add_prefix_space=prefix)
    for text in TEXTS:
        assert ours.tokenize(text, "first", -1) == roberta.tokenize(text, "first", -1)
    assert ours.tokenize_pair("the city", TEXTS[2], "first") == roberta.tokenize_pair("the city", TEXTS[2], "first")
    assert (ours.mask_token, ours.mask_token_id, ours.pad_token_id) == (
        roberta.mask_token, roberta.mask_token_id, roberta.pad_token_id,
    )  # fmt: skip


def test_named_tokens_are_the_rows_special_tokens(upload):
    ours, roberta = build("byte_level_bpe", renamed(upload), **NAMED), build("roberta", upload)
    for text in TEXTS:
        named_text = text.replace("<mask>", "<|mask|>")
        assert [w.ids for w in ours.tokenize(named_text, "first", -1)] == [w.ids for w in roberta.tokenize(text, "first", -1)]
    (row,) = ours.tokenize("paris", "first", -1)
    assert (ours.token(row.ids[0]), ours.token(row.ids[-1])) == ("<|bos|>", "<|eos|>")
    assert ours.mask_token == "<|mask|>" and ours.token(ours.mask_token_id) == "<|mask|>"
    assert ours.pad_token_id == upload["vocabulary"].index("<pad>")


def test_bos_and_eos_are_required_only_with_special_tokens(upload):
    vocabulary = [token for token in renamed(upload)["vocabulary"] if token not in ("<|bos|>", "<|eos|>")]
    with pytest.raises(EsError) as error:
        build("byte_level_bpe", {**upload, "vocabulary": vocabulary}, **NAMED)
    # Elasticsearch lists a HashSet's difference; its order for these two is UNCONFIRMED
    assert (error.value.status, error.value.reason) == (409, "stored vocabulary is missing required [<|eos|>, <|bos|>] token(s)")
    (row,) = build("byte_level_bpe", {**upload, "vocabulary": vocabulary}, with_special_tokens=False, **NAMED).tokenize(
        "paris", "first", -1
    )
    assert row.ids and all(vocabulary[i] not in GPT_STYLE.values() for i in row.ids)


def test_stored_settings_follow_elasticsearch():
    """ByteLevelBpeTokenization's fields in its order; a blank token is the default, as `resolveSpecialToken` has it."""
    stored = validate_tokenization("x", {"byte_level_bpe": {"with_special_tokens": False, "pad_token": " "}})
    assert stored == {"byte_level_bpe": {
        "do_lower_case": False, "with_special_tokens": False, "max_sequence_length": 512, "truncate": "first", "span": -1,
        "add_prefix_space": False, "unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
        "mask_token": "<mask>",
    }}  # fmt: skip
    assert mask_token(validate_tokenization("x", {"byte_level_bpe": {"mask_token": "<|m|>"}})) == "<|m|>"


@pytest.mark.parametrize(
    ("settings", "type_", "reason"),
    [
        ({"do_lower_case": True}, "illegal_argument_exception",
         "unable to set [do_lower_case] to [true] for byte_level_bpe tokenizer"),
        ({"bos_token": 1}, "x_content_parse_exception", "[byte_level_bpe_tokenization] failed to parse field [bos_token]"),
        ({"cls_token": "<s>"}, "x_content_parse_exception", "[byte_level_bpe_tokenization] unknown field [cls_token]"),
    ],
)
def test_invalid_settings(settings, type_, reason):
    with pytest.raises(EsError) as error:
        validate_tokenization("x", {"byte_level_bpe": settings})
    assert (error.value.status, error.value.type, error.value.reason) == (400, type_, reason)
