"""Runs a tiny Hugging Face model the way a worker does: rows built by our tokenizer from the
uploaded vocabulary, one row per forward pass (as Elasticsearch's native process runs them),
the document's rows stacked for the task's `postprocess`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# Positional graph inputs by count, as eland traces them.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


@dataclass
class Run:
    result: dict[str, Any]
    rows: list[Any]  # the Windows fed to the model
    outputs: list[np.ndarray]  # the model's output per row, before postprocess
    model: Any
    task: Any


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """`tiny(family, task)`: the saved tiny model's directory, built once per session."""
    from tests.support.models import tiny_model

    built: dict[tuple[str, str], Path] = {}

    def make(family: str, task: str) -> Path:
        if (family, task) not in built:
            built[family, task] = tiny_model(tmp_path_factory.mktemp(f"{family}-{task}"), family, task)
        return built[family, task]

    return make


@pytest.fixture(scope="session")
def infer(tiny):
    """`infer(family, task, text, config={}, update=None)`: one document through a real model."""
    import torch
    import transformers

    from sidecar.models.tasks import TASKS, apply_update, validate_task_config
    from sidecar.models.tokenization import build_tokenizer
    from tests.support.models import HEADS, uploaded_vocabulary

    def run(family: str, task: str, text: str, config: dict[str, Any] | None = None, update: dict | None = None) -> Run:
        directory = tiny(family, task)
        head = HEADS[task][0]
        model = getattr(transformers, "AutoModel" if head == "Model" else f"AutoModel{head}")
        model = model.from_pretrained(directory).eval()
        stored = validate_task_config(task, {"tokenization": {family: {"max_sequence_length": 128}}, **(config or {})})
        options = stored if update is None else apply_update(task, stored, update)
        worker = TASKS[task](stored, build_tokenizer(stored["tokenization"], uploaded_vocabulary(directory)))
        prepared = worker.preprocess(text, options)
        outputs = []
        for row in prepared.rows:
            inputs = worker.tokenizer.model_inputs([row])
            named = {name: torch.from_numpy(array) for name, array in zip(INPUT_NAMES, inputs)}
            with torch.inference_mode():
                output = model(**named)
            # eland's question answering graph stacks start and end logits: [2, rows, L]
            graph = torch.stack(output[:2]) if task == "question_answering" else output[0]
            (row_output,) = worker.split_rows(graph.float().numpy())
            outputs.append(row_output)
        return Run(worker.postprocess(prepared, stacked(outputs), options), prepared.rows, outputs, model, worker)

    return run


def stacked(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of different lengths zero-padded into one array, as the worker hands them over."""
    longest = max(len(row) for row in rows)
    return np.stack([np.pad(row, [(0, longest - len(row))] + [(0, 0)] * (row.ndim - 1)) for row in rows])
