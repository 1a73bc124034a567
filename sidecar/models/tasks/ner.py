"""Named entity recognition: per-token IOB scores grouped into entities, the way
Elasticsearch's NER processor does it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sidecar.errors import status_exception, validation_failed
from sidecar.models.tasks.base import (
    Prepared,
    Task,
    check_no_span,
    result,
    softmax,
    string_list,
    tokenization_settings,
    utf16,
    with_truncation,
)
from sidecar.models.tokenization.base import SPECIAL, NlpTokenizer, Window

DEFAULT_LABELS = ("O", "B_MISC", "I_MISC", "B_PER", "I_PER", "B_ORG", "I_ORG", "B_LOC", "I_LOC")
_PREFIXES = ("B-", "I-", "B_", "I_")
_IOB_ONLY = "[ner] only allows IOB tokenization tagging for classification labels"


@dataclass(frozen=True)
class Tag:
    """An IOB label: `B_PER` begins a PER entity, `I_PER` continues one, `O` is outside."""

    label: str
    entity: str

    @classmethod
    def parse(cls, label: str) -> Tag | None:
        upper = label.upper()
        if upper.startswith(_PREFIXES):
            return cls(label, upper[2:])
        return cls(label, upper) if upper == "O" else None

    @property
    def begins(self) -> bool:
        return self.label[:1] in ("b", "B")

    @property
    def outside(self) -> bool:
        return self.label in ("o", "O")


@dataclass
class Word:
    """A whole word of the input with its winning tag."""

    span: tuple[int, int]
    tag: Tag
    score: float


class NerTask(Task):
    name = "ner"
    config_fields = ("tokenization", "classification_labels", "results_field")

    def __init__(self, config: dict[str, Any], tokenizer: NlpTokenizer) -> None:
        super().__init__(config, tokenizer)
        self.tags = _tags(config.get("classification_labels") or list(DEFAULT_LABELS))

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Only the first row is read (Elasticsearch has no NER windowing)."""
        row = prepared.rows[0]
        if output.shape[-1] != len(self.tags):
            # Elasticsearch does not check this; a clear error beats a wrong tag.
            raise status_exception(
                409, f"Expected exactly [{len(self.tags)}] values in ner result; got [{output.shape[-1]}]"
            )
        words = _tag_words(row, softmax(output[0][: len(row.ids)]), self.tags)
        lowered = tokenization_settings(options)["do_lower_case"]
        source = prepared.text.lower() if lowered else prepared.text
        groups = _group(words)
        entities = [_entity(prepared.text, source, group) for group in groups]
        body = result(options, _annotate(prepared.text, groups), entities=entities)
        return with_truncation(body, prepared)

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        """The same entities: text, class and position (their probabilities may move)."""
        expected, found = (
            [(e["entity"], e["class_name"], e["start_pos"], e["end_pos"]) for e in answer["entities"]]
            for answer in (reference, candidate)
        )
        return None if expected == found else f"entities {found} instead of {expected}"

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        labels = string_list(cls.name, config, "classification_labels")
        return {"classification_labels": labels or None, **super().parse(config)}

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        labels = config.get("classification_labels") or []
        bad = [label for label in labels if not label.upper().startswith((*_PREFIXES, "O"))]
        if bad:
            raise status_exception(400, f"{_IOB_ONLY}; provided [{', '.join(bad)}]")
        if labels and all(label.upper() != "O" for label in labels):
            raise status_exception(400, f"{_IOB_ONLY}; missing outside label [O]")
        check_no_span(cls.name, config)


def _tags(labels: list[str]) -> list[Tag]:
    """Parses labels when the deployment starts, failing as Elasticsearch's processor does."""
    errors: list[str] = []
    for i, label in enumerate(labels):
        if Tag.parse(label) is None:
            errors.append(f"classification label [{label}] is not an entity I-O-B tag.")
        elif label in labels[:i]:
            errors.append(f"the classification label [{label}] is duplicated in the list [{', '.join(labels)}]")
    if errors:
        raise validation_failed(errors, "validation_exception")
    return [tag for tag in map(Tag.parse, labels) if tag is not None]


def _tag_words(row: Window, scores: np.ndarray, tags: list[Tag]) -> list[Word]:
    """Averages the probabilities of each word's tokens and keeps the best tag."""
    words: list[Word] = []
    start = 0
    while start < len(row.ids):
        span = row.word_spans[start]
        end = start + 1
        while end < len(row.ids) and row.word_spans[end] == span:
            end += 1
        if span != SPECIAL:
            mean = scores[start:end].mean(axis=0)
            best = int(np.argmax(mean))
            words.append(Word(span, tags[best], float(mean[best])))
        start = end
    return words


def _group(words: list[Word]) -> list[list[Word]]:
    """Consecutive words of one entity; a `B_` tag always starts a new one."""
    groups: list[list[Word]] = []
    current: list[Word] | None = None
    for word in words:
        if word.tag.outside:
            current = None
        elif current is not None and not word.tag.begins and word.tag.entity == current[0].tag.entity:
            current.append(word)
        else:
            current = [word]
            groups.append(current)
    return groups


def _entity(text: str, source: str, group: list[Word]) -> dict[str, Any]:
    """Elasticsearch cuts the entity from the lower-cased input when `do_lower_case`,
    and reports positions in UTF-16 code units (Java string indices)."""
    start, end = group[0].span[0], group[-1].span[1]
    return {
        "entity": source[start:end],
        "class_name": group[0].tag.entity,
        "class_probability": sum(word.score for word in group) / len(group),
        "start_pos": utf16(text, start),
        "end_pos": utf16(text, end),
    }


def _annotate(text: str, groups: list[list[Word]]) -> str:
    """`Hi [Josh](PER&Josh)`: each entity marked up; only spaces become `+`."""
    parts: list[str] = []
    position = 0
    for group in groups:
        start, end = group[0].span[0], group[-1].span[1]
        found = text[start:end]
        parts += [text[position:start], f"[{found}]({group[0].tag.entity}&{found.replace(' ', '+')})"]
        position = end
    return "".join(parts) + text[position:]
