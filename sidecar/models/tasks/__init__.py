"""Elasticsearch's NLP tasks: text in, Elasticsearch result JSON out.

`validate_task_config` and `apply_update` are safe to call from the API process:
nothing here imports torch or `tokenizers`.
"""

from __future__ import annotations

from typing import Any

from sidecar.models.tasks.base import Prepared, Task
from sidecar.models.tasks.fill_mask import FillMaskTask
from sidecar.models.tasks.ner import NerTask
from sidecar.models.tasks.pass_through import PassThroughTask
from sidecar.models.tasks.question_answering import QuestionAnsweringTask
from sidecar.models.tasks.text_classification import TextClassificationTask
from sidecar.models.tasks.text_embedding import TextEmbeddingTask
from sidecar.models.tasks.text_expansion import TextExpansionTask
from sidecar.models.tasks.text_similarity import TextSimilarityTask
from sidecar.models.tasks.zero_shot_classification import ZeroShotClassificationTask

__all__ = ["TASKS", "Prepared", "Task", "apply_update", "validate_task_config"]

TASKS: dict[str, type[Task]] = {
    task.name: task
    for task in (
        NerTask,
        TextClassificationTask,
        TextEmbeddingTask,
        ZeroShotClassificationTask,
        FillMaskTask,
        QuestionAnsweringTask,
        TextSimilarityTask,
        TextExpansionTask,
        PassThroughTask,
    )
}


def validate_task_config(task: str, config: dict[str, Any]) -> dict[str, Any]:
    """The task's PUT `inference_config` object as stored: defaults filled, checked."""
    return TASKS[task].validate_config(config)


def apply_update(task: str, config: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """The options one `_infer` request runs with: the stored config plus its
    `inference_config.<task>` override."""
    return TASKS[task].apply_update(config, update)
