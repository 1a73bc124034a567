"""Text classification: one label for the whole text, with the top classes."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.errors import status_exception
from sidecar.models.tasks.base import (
    Prepared,
    Task,
    ranked,
    result,
    same_classes,
    softmax,
    string_list,
    top_entry,
    typed,
    with_truncation,
)


class TextClassificationTask(Task):
    name = "text_classification"
    config_fields = ("tokenization", "classification_labels", "num_top_classes", "results_field")
    updatable = ("results_field", "tokenization", "num_top_classes", "classification_labels")

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Softmax per row, averaged over the rows (windows) of the text."""
        labels: list[str] = options["classification_labels"]
        if output.shape[-1] != len(labels):
            raise status_exception(
                409, f"Expected exactly [{len(labels)}] values in text classification result; got [{output.shape[-1]}]"
            )
        probabilities = softmax(output).mean(axis=0)
        order = ranked(probabilities)
        wanted = options.get("num_top_classes", 0)
        top = order if wanted < 0 else order[:wanted]
        classes = [top_entry(labels[i], float(probabilities[i])) for i in top]
        body = result(options, labels[order[0]])
        if classes:
            body["top_classes"] = classes
        body["prediction_probability"] = float(probabilities[order[0]])
        return with_truncation(body, prepared)

    def probe_update(self, texts: list[str]) -> dict[str, Any]:
        """Every class's probability is compared, not only the top one's."""
        return {"num_top_classes": -1}

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        return same_classes(reference, candidate)

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        """`num_top_classes` is stored as 0 when not sent (Elasticsearch's builder default)."""
        top = typed(cls.name, config, "num_top_classes", int)
        return {
            "classification_labels": string_list(cls.name, config, "classification_labels"),
            "num_top_classes": 0 if top is None else top,
            **super().parse(config),
        }

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        labels = config.get("classification_labels")
        if labels is None or len(labels) < 2:
            provided = "null" if labels is None else f"[{', '.join(labels)}]"
            raise status_exception(
                400, f"[text_classification] requires at least 2 [classification_labels]; provided {provided}"
            )

    @classmethod
    def update_fields(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        fields = super().update_fields(config, update)
        top = typed(cls.name, update, "num_top_classes", int)
        if top is not None:
            fields["num_top_classes"] = top
        labels = string_list(cls.name, update, "classification_labels")
        if labels is not None:
            defined = len(config["classification_labels"])
            if len(labels) != defined:
                raise status_exception(
                    400,
                    f"The number of [classification_labels] the model is defined with [{defined}] "
                    f"does not match the number in the update [{len(labels)}]",
                )
            fields["classification_labels"] = labels
        return fields
