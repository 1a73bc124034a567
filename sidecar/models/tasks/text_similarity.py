"""Text similarity: a cross-encoder's raw score for the infer-time `text` against the
document's text, windows combined by `span_score_combination_function`."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.errors import illegal_argument, status_exception
from sidecar.models.tasks.base import Prepared, Task, required, result, typed, value, with_truncation

SCORE_TOLERANCE = 1e-3  # relative to the score, or absolute below 1

FUNCTIONS = ("max", "mean")
_ENUM = "org.elasticsearch.xpack.core.ml.inference.trainedmodel.TextSimilarityConfig.SpanScoreFunction"


class TextSimilarityTask(Task):
    name = "text_similarity"
    config_fields = ("tokenization", "results_field", "span_score_combination_function")
    updatable = ("results_field", "text", "span_score_combination_function", "tokenization")
    names_every_field_when_unrecognized = True

    def preprocess(self, text: str, options: dict[str, Any]) -> Prepared:
        """`text` first, the document second, the document windowed when a span is set."""
        return self.paired_with("text", text, options)

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """The model's score as it is (no sigmoid); the windows' max or mean."""
        if output.shape[-1] != 1:
            raise status_exception(
                409, f"Expected exactly [1] value in text_similarity result; got [{output.shape[-1]}]"
            )
        scores = output[:, 0].astype(np.float64)
        score = scores.max() if options["span_score_combination_function"] == "max" else scores.mean()
        return with_truncation(result(options, float(score)), prepared)

    def probe_update(self, texts: list[str]) -> dict[str, Any]:
        return {"text": texts[0]}

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        difference = abs(value(reference) - value(candidate))
        allowed = SCORE_TOLERANCE * max(1.0, abs(value(reference)))
        return None if difference <= allowed else f"the score differs by {difference:.2g} (> {allowed:.2g})"

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        function = _function(typed(cls.name, config, "span_score_combination_function", str))
        return {**super().parse(config), "span_score_combination_function": function or "max"}

    @classmethod
    def update_fields(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        fields = super().update_fields(config, update)
        fields["text"] = required(typed(cls.name, update, "text", str), "text")
        function = _function(typed(cls.name, update, "span_score_combination_function", str))
        return fields if function is None else {**fields, "span_score_combination_function": function}


def _function(value: str | None) -> str | None:
    """Elasticsearch upper-cases the name and looks it up in its enum."""
    if value is not None and value.lower() not in FUNCTIONS:
        raise illegal_argument(f"No enum constant {_ENUM}.{value.upper()}")
    return None if value is None else value.lower()
