"""Question answering: the likeliest span of the text that answers the infer-time
`question`, read from the model's start and end logits, window by window."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sidecar.errors import status_exception
from sidecar.models.tasks.base import (
    Prepared,
    Task,
    required,
    result,
    typed,
    typed_int,
    utf16,
    value,
    with_truncation,
)
from sidecar.models.tokenization.base import Window

DEFAULT_MAX_ANSWER_LENGTH = 15
PROBE_QUESTION = "Who works where?"


@dataclass(frozen=True)
class Span:
    """Answer candidate: token indexes into one window's text part, and its score."""

    start: int
    end: int
    score: float
    window: int


class QuestionAnsweringTask(Task):
    name = "question_answering"
    config_fields = ("num_top_classes", "max_answer_length", "tokenization", "results_field")
    updatable = ("question", "num_top_classes", "max_answer_length", "results_field", "tokenization")
    names_every_field_when_unrecognized = True

    def preprocess(self, text: str, options: dict[str, Any]) -> Prepared:
        """`question` first, the text second, the text windowed when a span is set."""
        return self.paired_with("question", text, options)

    def split_rows(self, output: np.ndarray) -> list[np.ndarray]:
        """eland's graph stacks start and end logits as `[2, rows, L]`: one `[L, 2]` array per row."""
        return [output[:, row, :].T for row in range(output.shape[1])]

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """The best spans over all windows; `output` is `[rows, L, 2]`."""
        wanted = max(options["num_top_classes"], 1)
        spans = [
            span
            for index, row in enumerate(prepared.rows)
            for span in _spans(row, output[index, : len(row.ids)], options["max_answer_length"], wanted, index)
        ]
        best = sorted(spans, key=lambda span: -span.score)[:wanted]  # earlier windows win ties
        answers = [_answer(prepared, span) for span in best]
        top = answers[0]
        body = result(options, top["answer"], start_offset=top["start_offset"], end_offset=top["end_offset"])
        if options["num_top_classes"] > 0:
            body["top_classes"] = answers
        body["prediction_probability"] = best[0].score
        return with_truncation(body, prepared)

    def probe_update(self, texts: list[str]) -> dict[str, Any]:
        return {"question": PROBE_QUESTION}

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        """The same answer at the same place."""
        expected, found = ((value(a), a["start_offset"], a["end_offset"]) for a in (reference, candidate))
        return None if expected == found else f"answer {found} instead of {expected}"

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "num_top_classes": typed_int(cls.name, config, "num_top_classes", 0),
            "max_answer_length": typed_int(cls.name, config, "max_answer_length", DEFAULT_MAX_ANSWER_LENGTH),
            **super().parse(config),
        }

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        if config["num_top_classes"] < 0:
            raise status_exception(
                400, f"[num_top_classes] must be greater than or equal to [0]; provided [{config['num_top_classes']}]"
            )
        if config["max_answer_length"] <= 0:
            raise status_exception(
                400, f"[max_answer_length] must be greater than [0]; provided [{config['max_answer_length']}]"
            )

    @classmethod
    def update_fields(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        fields = {**super().update_fields(config, update), **_ints(cls.name, update)}
        return {**fields, "question": required(typed(cls.name, update, "question", str), "question")}


def _ints(owner: str, update: dict[str, Any]) -> dict[str, int]:
    values = {name: typed(owner, update, name, int) for name in ("num_top_classes", "max_answer_length")}
    return {name: value for name, value in values.items() if value is not None}


def _spans(row: Window, logits: np.ndarray, longest: int, wanted: int, window: int) -> list[Span]:
    """Elasticsearch's scoring: start and end logits each softmaxed over the first token and
    the text's tokens, the first token's probability then zeroed; a span scores start x end.

    With one answer wanted only the window's best positive span is kept (or an empty one at
    the text's first token). The final separator is never part of a span.
    """
    first, size = row.second_start, len(row.ids)
    starts, ends = (_normalized(logits[:, k], first, size) for k in (0, 1))
    pairs = [(i, j) for i in range(first, size - 1) for j in range(i, min(i + longest, size - 1))]
    spans = [Span(i - first, j - first, float(starts[i] * ends[j]), window) for i, j in pairs]
    if wanted > 1:
        return spans
    best = Span(0, 0, 0.0, window)
    for span in spans:
        if starts[span.start + first] != 0 and span.score > best.score:
            best = span
    return [best]


def _normalized(logits: np.ndarray, first: int, size: int) -> np.ndarray:
    kept = np.zeros(size, dtype=bool)
    kept[0] = True
    kept[first : size - 1] = True
    scores = np.where(kept, logits.astype(np.float64), -10000.0)
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    probabilities[0] = 0.0
    return probabilities


def _answer(prepared: Prepared, span: Span) -> dict[str, Any]:
    """The span's text and its offsets in UTF-16 code units, as Java reports them."""
    row = prepared.rows[span.window]
    start = row.offsets[row.second_start + span.start][0]
    end = row.offsets[row.second_start + span.end][1]
    return {
        "answer": prepared.text[start:end],
        "start_offset": utf16(prepared.text, start),
        "end_offset": utf16(prepared.text, end),
        "score": span.score,
    }
