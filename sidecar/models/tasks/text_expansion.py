"""Text expansion (ELSER-style): the model pools a weight per vocabulary token; the
positive ones become `{token: weight}`, heaviest first."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.models.tasks.base import Prepared, Task, result, value, with_truncation

WEIGHT_TOLERANCE = 1e-2


class TextExpansionTask(Task):
    name = "text_expansion"
    config_fields = ("tokenization", "results_field")

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Several vectors (windows, or a graph that does not pool) are merged by their maximum.

        Weights are Java floats: written with the shortest digits that round-trip a float32.
        Field names cannot hold `.`, so Elasticsearch writes it `__`.
        """
        weights = output.reshape(-1, output.shape[-1]).max(axis=0).astype(np.float32)
        kept = sorted(np.flatnonzero(weights > 0), key=lambda i: -weights[i])  # ties stay in vocabulary order
        tokens = {self.tokenizer.token(int(i)).replace(".", "__"): float(str(weights[i])) for i in kept}
        return with_truncation(result(options, tokens), prepared)

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        """Every token's weight within the tolerance (a token missing on one side weighs 0 there)."""
        expected, found = value(reference), value(candidate)
        worst = max((abs(expected.get(t, 0.0) - found.get(t, 0.0)) for t in {*expected, *found}), default=0.0)
        return None if worst <= WEIGHT_TOLERANCE else f"a token's weight differs by {worst:.2g} (> {WEIGHT_TOLERANCE:g})"
