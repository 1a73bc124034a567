"""Zero-shot classification: an NLI model asked, per candidate label, whether the
text entails "This example is <label>."."""

from __future__ import annotations

from typing import Any

import numpy as np

from sidecar.errors import illegal_argument, status_exception
from sidecar.models.tasks.base import (
    Prepared,
    Task,
    check_no_span,
    ranked,
    result,
    same_classes,
    softmax,
    string_list,
    tokenization_settings,
    top_entry,
    typed,
    with_truncation,
)
from sidecar.models.tokenization.base import NlpTokenizer

DEFAULT_HYPOTHESIS_TEMPLATE = "This example is {}."
NLI_LABELS = "[contradiction, entailment, neutral]"  # Elasticsearch prints its sorted set
PROBE_LABELS = ["news", "sport", "music", "business"]  # when the config names none


class ZeroShotClassificationTask(Task):
    name = "zero_shot_classification"
    config_fields = (
        "tokenization", "classification_labels", "multi_label", "hypothesis_template", "labels", "results_field"
    )  # fmt: skip
    updatable = ("multi_label", "labels", "results_field", "tokenization")
    names_every_field_when_unrecognized = True

    def __init__(self, config: dict[str, Any], tokenizer: NlpTokenizer) -> None:
        super().__init__(config, tokenizer)
        lowered = [label.lower() for label in config["classification_labels"]]
        if "entailment" not in lowered or "contradiction" not in lowered:
            raise status_exception(
                400, "zero_shot_classification requires [entailment] and [contradiction] in classification_labels"
            )
        self.entailment, self.contradiction = lowered.index("entailment"), lowered.index("contradiction")

    def preprocess(self, text: str, options: dict[str, Any]) -> Prepared:
        """One pair row per candidate label: the text, then the label's hypothesis."""
        labels = options.get("labels")
        if not labels:
            raise status_exception(400, "zero_shot_classification requires non-empty [labels]")
        template, truncate = options["hypothesis_template"], tokenization_settings(options)["truncate"]
        hypotheses = [template.replace("{}", label, 1) for label in labels]
        return Prepared(text, [self.tokenizer.tokenize_pair(text, hypothesis, truncate) for hypothesis in hypotheses])

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        """Single label: softmax of the entailment logits across labels. Multi label: per label,
        softmax of entailment against contradiction."""
        labels: list[str] = options["labels"]
        if output.shape[0] != len(labels):
            raise status_exception(
                409,
                f"Expected exactly [{len(labels)}] values in zero shot classification result; got [{output.shape[0]}]",
            )
        if output.shape[-1] != 3:
            raise status_exception(
                409, f"Expected exactly [3] values in inner zero shot classification result; got [{output.shape[-1]}]"
            )
        if options["multi_label"]:
            scores = softmax(output[:, [self.entailment, self.contradiction]])[:, 0]
        else:
            scores = softmax(output[:, self.entailment])
        order = ranked(scores)
        body = result(options, labels[order[0]], top_classes=[top_entry(labels[i], float(scores[i])) for i in order])
        body["prediction_probability"] = float(scores[order[0]])
        return with_truncation(body, prepared)

    def probe_update(self, texts: list[str]) -> dict[str, Any]:
        return {"labels": self.config.get("labels") or PROBE_LABELS}

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        return same_classes(reference, candidate)

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        template = typed(cls.name, config, "hypothesis_template", str)
        return {
            "classification_labels": string_list(cls.name, config, "classification_labels"),
            "multi_label": bool(typed(cls.name, config, "multi_label", bool)),
            "hypothesis_template": DEFAULT_HYPOTHESIS_TEMPLATE if template is None else template,
            "labels": string_list(cls.name, config, "labels"),
            **super().parse(config),
        }

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        """Elasticsearch's constructor checks, in its order."""
        nli = config.get("classification_labels")
        if nli is None:
            raise illegal_argument("Required [classification_labels]")
        if len(nli) != 3:
            raise status_exception(400, f"[classification_labels] must contain exactly the three values {NLI_LABELS}")
        invalid = [label.lower() for label in nli if label.lower() not in ("entailment", "neutral", "contradiction")]
        if invalid:
            raise status_exception(
                400,
                f"[classification_labels] must contain exactly the three values {NLI_LABELS}. "
                f"Invalid labels [{', '.join(invalid)}]",
            )
        _check_labels(config.get("labels"))
        check_no_span(cls.name, config)

    @classmethod
    def update_fields(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        fields = super().update_fields(config, update)
        labels = string_list(cls.name, update, "labels")
        multi_label = typed(cls.name, update, "multi_label", bool)
        _check_labels(labels)
        if not labels and not config.get("labels"):
            raise status_exception(
                400,
                "stored configuration has no [labels] defined, supplied inference_config update must supply [labels]",
            )
        fields |= {} if labels is None else {"labels": labels}
        return fields | ({} if multi_label is None else {"multi_label": multi_label})


def _check_labels(labels: list[str] | None) -> None:
    if labels is not None and not labels:
        raise status_exception(400, "[labels] must not be empty")
