"""Pass through: the model's output for the text, unprocessed."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.models.tasks.base import Prepared, Task, result, with_truncation


class PassThroughTask(Task):
    name = "pass_through"
    config_fields = ("tokenization", "results_field")

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Always a 2-D array, as Elasticsearch returns it: the first row's `[L, H]` for a
        per-token output, or every row's vector for a pooled one."""
        value = output if output.ndim == 2 else output[0]
        return with_truncation(result(options, value.tolist()), prepared)
