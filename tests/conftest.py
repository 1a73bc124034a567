"""Session-wide tiny models and their traces, each built once because tracing costs seconds.

The model code is imported inside the fixtures: suites that need no model then start without
paying for torch and transformers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sidecar.importer.trace import TracedModel

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be fetched from the hub


@pytest.fixture(scope="session")
def tiny_ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.models import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-ner"), "ner")


@pytest.fixture(scope="session")
def tiny_classifier_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.models import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-classifier"), "text_classification")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from tests.support.models import minilm_dir

    return minilm_dir()


def _trace(model_dir: Path, task_type: str, out_dir: Path) -> TracedModel:
    from sidecar.importer.trace import trace_model

    return trace_model(model_dir, task_type, out_dir)


@pytest.fixture(scope="session")
def traced_ner(tiny_ner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TracedModel:
    return _trace(tiny_ner_dir, "ner", tmp_path_factory.mktemp("traced-ner"))


@pytest.fixture(scope="session")
def traced_classifier(tiny_classifier_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TracedModel:
    return _trace(tiny_classifier_dir, "text_classification", tmp_path_factory.mktemp("traced-classifier"))


@pytest.fixture(scope="session")
def traced_minilm(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> TracedModel:
    return _trace(minilm_dir, "text_embedding", tmp_path_factory.mktemp("traced-minilm"))


@pytest.fixture(scope="module")
def es(node):  # `node` comes from the test folder's conftest
    """The official client, as users call a node."""
    return node.client()
