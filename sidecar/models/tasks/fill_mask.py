"""Fill mask: the likeliest tokens for the one mask token in the text."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.errors import illegal_argument, status_exception, validation_failed
from sidecar.models.tasks.base import (
    Prepared,
    Task,
    check_no_span,
    ranked,
    result,
    softmax,
    top_entry,
    typed,
    typed_int,
    value,
    with_truncation,
)
from sidecar.models.tokenization.base import mask_token

DEFAULT_NUM_TOP_CLASSES = 5


class FillMaskTask(Task):
    name = "fill_mask"
    config_fields = ("tokenization", "num_top_classes", "results_field", "mask_token")
    updatable = ("num_top_classes", "results_field", "tokenization")

    def preprocess(self, text: str, options: dict[str, Any]) -> Prepared:
        """Elasticsearch checks the raw text for its tokenizer's mask token first."""
        mask = self.tokenizer.mask_token
        if mask not in text:
            raise validation_failed([f"no {mask} token could be found in the input"], "validation_exception")
        if text.count(mask) > 1:
            raise status_exception(400, f"only one {mask} token should exist in the input")
        return super().preprocess(text, options)

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Softmax over the vocabulary at the mask's position in the first row."""
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise status_exception(
                409,
                f"The token id for the mask token {self.tokenizer.mask_token} is not known in the tokenizer. "
                "Check the vocabulary contains the mask token",
            )
        ids = prepared.rows[0].ids
        if mask_id not in ids:
            raise status_exception(500, f"mask token id [{mask_id}] not found in the tokenization")
        probabilities = softmax(output[0][ids.index(mask_id)])
        wanted: int = options["num_top_classes"]
        top = ranked(probabilities)[: len(probabilities) if wanted == -1 else max(wanted, 1)]
        words = [self.tokenizer.decode(self.tokenizer.token(i)) for i in top]
        body = result(options, words[0])
        if wanted != 0:
            body["top_classes"] = [top_entry(word, float(probabilities[i])) for word, i in zip(words, top)]
        body["prediction_probability"] = float(probabilities[top[0]])
        field = options.get("results_field") or "predicted_value"
        body[f"{field}_sequence"] = prepared.text.replace(self.tokenizer.mask_token, words[0])
        return with_truncation(body, prepared)

    def probe_docs(self, texts: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Each text with its middle word masked."""
        masked = []
        for text in texts:
            words = text.split(" ")
            words[len(words) // 2] = self.tokenizer.mask_token
            masked.append(" ".join(words))
        return super().probe_docs(masked)

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        same = value(reference) == value(candidate)
        return None if same else f"top token [{value(candidate)}] instead of [{value(reference)}]"

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Elasticsearch writes the tokenizer's mask token into the config it returns."""
        stored = super().validate_config(config)
        return {**stored, "mask_token": mask_token(stored["tokenization"])}

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "num_top_classes": typed_int(cls.name, config, "num_top_classes", DEFAULT_NUM_TOP_CLASSES),
            "mask_token": typed(cls.name, config, "mask_token", str),
            **super().parse(config),
        }

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        requested, required = config.get("mask_token"), mask_token(config["tokenization"])
        if requested is not None and requested != required:
            raise illegal_argument(f"Mask token requested was [{requested}] but must be [{required}] for this model")
        check_no_span(cls.name, config)

    @classmethod
    def update_fields(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        fields = super().update_fields(config, update)
        top = typed(cls.name, update, "num_top_classes", int)
        return fields if top is None else {**fields, "num_top_classes": top}
