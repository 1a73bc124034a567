"""Text embedding: the model pools (and normalises) inside its graph, so the
result is its first output row as it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.errors import status_exception
from sidecar.models.tasks.base import Prepared, Task, check_no_span, cosine, result, typed, value, with_truncation

MIN_COSINE = 0.9999


class TextEmbeddingTask(Task):
    name = "text_embedding"
    config_fields = ("tokenization", "results_field", "embedding_size")

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        return with_truncation(result(options, output[0].tolist()), prepared)

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        similarity = cosine(value(reference), value(candidate))
        return None if similarity >= MIN_COSINE else f"cosine {similarity:.6f} < {MIN_COSINE}"

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {**super().parse(config), "embedding_size": typed(cls.name, config, "embedding_size", int)}

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        size = config.get("embedding_size")
        if size is not None and size <= 0:
            raise status_exception(400, f"[embedding_size] must be a number greater than 0; configured size [{size}]")
        check_no_span(cls.name, config)
