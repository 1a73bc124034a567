"""`sidecar import` as a user runs it: its own process, a real node, and a local hub cache standing in for the hub."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from elasticsearch import Elasticsearch, NotFoundError
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer

from sidecar.cli import build_parser
from sidecar.importer import run_import
from sidecar.importer.trace import TracedModel
from tests.support.deploy import infer, start, uploaded
from tests.support.hub_cache import cache_hub_model
from tests.support.models import NER_LABELS, tiny_bert
from tests.support.node import NodeProcess, free_port, module_node

node = module_node()

PREFIX = "sidecar import: "
STEPS = ["tracing", "freezing", "saving", "measuring memory"]


def sidecar_import(*args: str, hub_cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if hub_cache is not None:
        env["HF_HUB_CACHE"] = str(hub_cache)
    command = [sys.executable, "-m", "sidecar", "import", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def errors(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line.removeprefix(PREFIX) for line in result.stderr.splitlines() if line.startswith(PREFIX)]


def exists(es: Elasticsearch, model_id: str) -> bool:
    try:
        es.ml.get_trained_models(model_id=model_id)
    except NotFoundError:
        return False
    return True


def test_a_hub_model_is_imported_from_the_local_hub_cache_with_progress(
    node: NodeProcess, es: Elasticsearch, tiny_ner_dir: Path, tmp_path: Path
) -> None:
    cache_hub_model(tmp_path / "hub", "acme/tiny-NER", tiny_ner_dir)
    result = sidecar_import(
        "--hub-model-id",
        "acme/tiny-NER",
        "--task-type",
        "ner",
        "--url",
        node.url,
        "--start",
        hub_cache=tmp_path / "hub",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "uploaded [acme__tiny-ner] and started it\n"
    steps = [line for line in result.stderr.splitlines() if re.match(r"\[\d/5\] ", line)]
    assert steps == ["[1/5] loading [acme/tiny-NER] for task [ner]", *(f"[{i}/5] {s}" for i, s in enumerate(STEPS, 2))]
    config = es.ml.get_trained_models(model_id="acme__tiny-ner")["trained_model_configs"][0]
    assert config["description"] == "Model acme/tiny-NER for task type 'ner'"
    assert "entities" in infer(es, "acme__tiny-ner", ["John Smith lives in London."])[0]


def test_a_hub_id_not_in_the_cache_is_one_line_before_any_tracing(node: NodeProcess, tmp_path: Path) -> None:
    result = sidecar_import(
        "--hub-model-id", "acme/absent", "--task-type", "ner", "--url", node.url, hub_cache=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{PREFIX}model [acme/absent] not found in the local hub cache, and the hub cannot be reached or is switched "
        "off (HF_HUB_OFFLINE)"
    ]


def test_an_unreachable_node_is_one_line_naming_it_before_any_tracing(tiny_ner_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = sidecar_import(str(tiny_ner_dir), "--task-type", "ner", "--url", url)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{PREFIX}cannot reach {url}: ")


def test_a_model_id_the_node_holds_is_one_line_before_any_tracing(
    node: NodeProcess, es: Elasticsearch, traced_ner: TracedModel, tiny_ner_dir: Path
) -> None:
    uploaded(node.url, traced_ner, "taken")
    result = sidecar_import(str(tiny_ner_dir), "--task-type", "ner", "--url", node.url, "--es-model-id", "taken")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{PREFIX}trained model [taken] already exists; use --clear-previous to replace it"
    ]


def test_a_head_the_checkpoint_lacks_is_refused_in_one_line_before_tracing(
    node: NodeProcess, es: Elasticsearch, tmp_path: Path
) -> None:
    encoder = str(tiny_bert(tmp_path / "encoder", "pass_through", NER_LABELS))  # a BertModel: no token classifier
    result = sidecar_import(encoder, "--task-type", "ner", "--url", node.url, "--es-model-id", "random-head")
    assert result.returncode == 1
    assert errors(result) == [
        f"[{encoder}] has no trained weights for ['classifier.bias', 'classifier.weight']: transformers would "
        "initialise them randomly (newly initialized), so its answers would mean nothing; use --force to import it "
        "anyway"
    ]
    assert "[2/5] tracing" not in result.stderr.splitlines()
    assert not exists(es, "random-head")


def _unknown_architecture(path: Path) -> None:
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"model_type": "acme-net", "architectures": ["AcmeNetModel"]}))


NOT_MODELS: dict[str, tuple[Callable[[Path], object], str]] = {
    "missing": (lambda path: None, "model directory [{}] does not exist"),
    "no-config-json": (Path.mkdir, "[{}] is not a Hugging Face model directory: it has no config.json"),
    "unknown-architecture": (
        _unknown_architecture,
        "cannot load a model from [{}]: The checkpoint you are trying to load has model type `acme-net` but "
        "Transformers does not recognize this architecture.",
    ),
}


@pytest.mark.parametrize("kind", NOT_MODELS)
def test_a_directory_that_is_not_a_model_is_one_line(node: NodeProcess, es: Elasticsearch, tmp_path: Path, kind: str):
    make, reason = NOT_MODELS[kind]
    path = tmp_path / kind
    make(path)
    result = sidecar_import(str(path), "--task-type", "ner", "--url", node.url, "--es-model-id", kind)
    assert result.returncode == 1
    [error] = errors(result)
    assert error.startswith(reason.format(path))
    assert not exists(es, kind)


def test_a_long_text_embeds_as_sentence_transformers_embeds_it(
    node: NodeProcess, es: Elasticsearch, traced_minilm: TracedModel, minilm_dir: Path
) -> None:
    """all-MiniLM-L6-v2 truncates at its sentence_bert_config.json's 256 tokens, not at its tokenizer's 512."""
    text = " ".join(
        f"Report {i}: markets in Berlin, Paris and Tokyo moved as investors weighed new data." for i in range(25)
    )
    assert 300 < len(AutoTokenizer.from_pretrained(minilm_dir)(text)["input_ids"]) < 512
    model_id = uploaded(node.url, traced_minilm, "long-text-minilm")
    start(es, model_id)
    embedding = torch.tensor(infer(es, model_id, [text])[0]["predicted_value"])
    expected = torch.from_numpy(SentenceTransformer(str(minilm_dir), device="cpu").encode([text]))[0]
    assert torch.nn.functional.cosine_similarity(embedding, expected, dim=0).item() >= 0.9999


def test_the_source_is_a_directory_or_a_hub_id_never_both(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    assert parser.parse_args(["import", "--hub-model-id", "acme/x", "--task-type", "ner"]).model_dir is None
    with pytest.raises(SystemExit) as raised:
        parser.parse_args(["import", "dir", "--hub-model-id", "acme/x", "--task-type", "ner"])
    assert raised.value.code == 2
    assert "argument --hub-model-id: not allowed with argument hf-model-dir" in capsys.readouterr().err
    assert run_import(parser.parse_args(["import", "--task-type", "ner"])) == 2
    assert capsys.readouterr().err == "sidecar import: give a model directory or --hub-model-id\n"


def test_the_hub_model_id_may_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_HUB_MODEL_ID", "acme/x")
    parser = build_parser()
    assert parser.parse_args(["import", "--task-type", "ner"]).hub_model_id == "acme/x"
    assert parser.parse_args(["import", "dir", "--task-type", "ner"]).model_dir == "dir"


def test_the_hub_access_token_comes_from_elands_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_ACCESS_TOKEN", "hf_from_the_environment")
    args = build_parser().parse_args(["import", "--hub-model-id", "acme/x", "--task-type", "ner"])
    assert args.hub_access_token == "hf_from_the_environment"
