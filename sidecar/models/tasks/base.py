"""What every NLP task shares: turning text into model rows, the result-object
conventions, and the config checks Elasticsearch applies to every task.

Only numpy and the light tokenization rules are imported: the API process uses
the config checks and must not load torch or `tokenizers`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from sidecar.errors import illegal_argument, status_exception
from sidecar.models.tokenization.base import (
    NlpTokenizer,
    Window,
    kind_and_settings,
    parse_failure,
    typed,
    unknown_field,
    update_tokenization,
    validate_tokenization,
)

DEFAULT_RESULTS_FIELD = "predicted_value"


@dataclass
class Prepared:
    """A document ready for the model, kept until its output comes back."""

    text: str
    rows: list[Window]


class Task:
    """One Elasticsearch NLP task, run inside a worker process."""

    name: ClassVar[str]
    config_fields: ClassVar[tuple[str, ...]]
    """Keys a stored config may hold, in Elasticsearch's output order."""
    updatable: ClassVar[tuple[str, ...]] = ("results_field", "tokenization")
    """Keys an infer-time override may hold."""
    names_every_field_when_unrecognized: ClassVar[bool] = False
    """Some of Elasticsearch's update parsers list every key sent, not only the unknown ones."""

    def __init__(self, config: dict[str, Any], tokenizer: NlpTokenizer) -> None:
        self.config = config
        self.tokenizer = tokenizer

    def preprocess(self, text: str, options: dict[str, Any]) -> Prepared:
        settings = tokenization_settings(options)
        return Prepared(text, self.tokenizer.tokenize(text, settings["truncate"], settings["span"]))

    def paired_with(self, option: str, text: str, options: dict[str, Any]) -> Prepared:
        """Pair tasks: the required `option` text first, the document second, windowed when a span is set."""
        first = options.get(option)
        if first is None:
            raise status_exception(
                400, f"please provide configuration update for {self.name} task including the desired [{option}]"
            )
        settings = tokenization_settings(options)
        return Prepared(text, self.tokenizer.tokenize_pair_windows(first, text, settings["truncate"], settings["span"]))

    def postprocess(self, prepared: Prepared, output: np.ndarray, options: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def probe_docs(self, texts: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Documents for the precision probe: `texts` with the options of a request that asks for a full answer."""
        options = self.apply_update(self.config, self.probe_update(texts))
        return [(text, options) for text in texts]

    def probe_update(self, texts: list[str]) -> dict[str, Any]:
        """The infer-time `inference_config` update the probe's requests carry."""
        return {}

    def parity(self, reference: dict[str, Any], candidate: dict[str, Any]) -> str | None:
        """Why `candidate` (a reduced-precision answer) is not the same answer as `reference` (fp32's), or None.
        A task without a criterion never accepts reduced precision."""
        return f"[{self.name}] has no parity criterion"

    def split_rows(self, output: np.ndarray) -> list[np.ndarray]:
        """One array per input row of a batch's output: the graph's first axis, unless the
        task's graph lays its output out otherwise."""
        return list(output)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """A PUT config as Elasticsearch stores it: defaults filled, keys in order."""
        check_fields(cls.name, config, cls.config_fields)
        filled = {"tokenization": validate_tokenization(cls.name, config.get("tokenization")), **cls.parse(config)}
        cls.check(filled)
        return {key: filled[key] for key in cls.config_fields if filled.get(key) is not None}

    @classmethod
    def parse(cls, config: dict[str, Any]) -> dict[str, Any]:
        """The task's own PUT fields, typed and defaulted."""
        return {"results_field": typed(cls.name, config, "results_field", str)}

    @classmethod
    def check(cls, config: dict[str, Any]) -> None:
        """Elasticsearch's config constructor checks, run at PUT and after updates."""

    @classmethod
    def apply_update(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        """The effective options for one request: `config` with an infer-time
        `inference_config` override applied, as Elasticsearch's map parser does."""
        unrecognized = [key for key in update if key not in cls.updatable]
        if unrecognized:
            named = list(update) if cls.names_every_field_when_unrecognized else unrecognized
            raise status_exception(400, f"Unrecognized fields [{', '.join(named)}].")
        options = {**config, **cls.update_fields(config, update)}
        options["tokenization"] = update_tokenization(cls.name, config["tokenization"], update.get("tokenization"))
        cls.check(options)
        return options

    @classmethod
    def update_fields(cls, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
        """The task's own overrides, typed; absent keys are left out."""
        results_field = typed(cls.name, update, "results_field", str)
        return {} if results_field is None else {"results_field": results_field}


def check_fields(owner: str, config: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Elasticsearch's strict PUT parser: the vocabulary is its own, unknown keys fail."""
    if "vocabulary" in config:
        raise status_exception(400, "illegal setting [vocabulary] on inference model creation")
    for key in config:
        if key not in allowed:
            raise unknown_field(owner, key)


def check_no_span(name: str, config: dict[str, Any]) -> None:
    span = tokenization_settings(config)["span"]
    if span != -1:
        raise status_exception(
            400, f"[{name}] does not support windowing long text sequences; configured span [{span}]"
        )


def tokenization_settings(config: dict[str, Any]) -> dict[str, Any]:
    return kind_and_settings(config["tokenization"])[1]


def typed_int(owner: str, config: dict[str, Any], name: str, default: int | None = None) -> int | None:
    value = typed(owner, config, name, int)
    return default if value is None else value


def required(value: Any, name: str) -> Any:
    """Elasticsearch's `ExceptionsHelper.requireNonNull`."""
    if value is None:
        raise illegal_argument(f"[{name}] must not be null.")
    return value


def top_entry(label: str, probability: float) -> dict[str, Any]:
    """A `top_classes` entry: Elasticsearch writes the probability twice."""
    return {"class_name": label, "class_probability": probability, "class_score": probability}


def utf16(text: str, index: int) -> int:
    """A char index as Java counts it: in UTF-16 code units."""
    return len(text[:index].encode("utf-16-le")) // 2


def ranked(scores: np.ndarray) -> list[int]:
    """Indexes by descending score; ties keep index order, as Java's stable sort does."""
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def string_list(owner: str, config: dict[str, Any], name: str) -> list[str] | None:
    values = typed(owner, config, name, list)
    if values is not None and not all(isinstance(value, str) for value in values):
        raise parse_failure(owner, name)
    return values


def result(options: dict[str, Any], value: Any, **fields: Any) -> dict[str, Any]:
    """`{<results_field>: value, **fields}`, as Elasticsearch orders result objects."""
    return {options.get("results_field") or DEFAULT_RESULTS_FIELD: value, **fields}


def with_truncation(body: dict[str, Any], prepared: Prepared) -> dict[str, Any]:
    """Elasticsearch appends `is_truncated` last, and only when true."""
    if any(row.is_truncated for row in prepared.rows):
        body["is_truncated"] = True
    return body


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in double precision, as Elasticsearch computes it."""
    scores = logits.astype(np.float64)
    exps = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def value(answer: dict[str, Any]) -> Any:
    """An answer's result value: its first field, whatever `results_field` names it."""
    return next(iter(answer.values()))


def cosine(a: Any, b: Any) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norms) if norms else float(np.array_equal(a, b))


def same_classes(reference: dict[str, Any], candidate: dict[str, Any], tolerance: float = 1e-3) -> str | None:
    """Classification parity: the same top label, every probability within `tolerance`."""
    if value(reference) != value(candidate):
        return f"top label [{value(candidate)}] instead of [{value(reference)}]"
    pairs = [(reference["prediction_probability"], candidate["prediction_probability"])]
    expected = {c["class_name"]: c["class_probability"] for c in reference.get("top_classes", [])}
    pairs += [(expected.get(c["class_name"], 0.0), c["class_probability"]) for c in candidate.get("top_classes", [])]
    worst = max(abs(a - b) for a, b in pairs)
    return None if worst <= tolerance else f"a probability differs by {worst:.2g} (> {tolerance:g})"
