"""Pass through: the model's output for the text, unprocessed."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.models.tasks.base import Prepared, Task, cosine, result, value, with_truncation
from sidecar.models.tasks.text_embedding import MIN_COSINE


class PassThroughTask(Task):
    name = "pass_through"
    config_fields = ("tokenization", "results_field")

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Always a 2-D array, as Elasticsearch returns it: the first row's `[L, H]` for a
        per-token output, or every row's vector for a pooled one."""
        value = output if output.ndim == 2 else output[0]
        return with_truncation(result(options, value.tolist()), prepared)

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        """Every output row points the same way (cosine), as for embeddings."""
        worst = min(cosine(a, b) for a, b in zip(value(reference), value(candidate), strict=True))
        return None if worst >= MIN_COSINE else f"a row's cosine {worst:.6f} < {MIN_COSINE}"
