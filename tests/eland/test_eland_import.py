"""Models uploaded by eland 9.2's own `eland_import_hub_model` run unchanged on a node, and answer as the same
models do when Hugging Face transformers runs them.

eland, its transformers 4 and the reference runs live in a virtualenv of their own; `eland_side.py` is the part
of this module that runs there. Three runs of it serve the whole module: build the tiny models, import them all
through eland's CLI, run them all in transformers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from elasticsearch import Elasticsearch

from sidecar.models.tokenization import build_tokenizer
from tests.support.eland_env import ElandEnv, eland_env
from tests.support.models import HEADS, HIDDEN_SIZE, MAX_LENGTH, VOCABULARY, tiny_tokenizer, uploaded_vocabulary
from tests.support.node import NodeProcess

pytestmark = pytest.mark.timeout(1800)  # the first test may build eland's virtualenv

SIDE = Path(__file__).with_name("eland_side.py")
FAMILIES = ("bert", "roberta")
TASKS = ("ner", "text_classification", "text_embedding", "fill_mask", "zero_shot_classification")
CASES = tuple(f"{family}-{task}" for family in FAMILIES for task in TASKS)
"""Each case's folder name, `--hub-model-id` (relative to the models' folder), and so the model id eland derives."""

MASKS = {"bert": "[MASK]", "roberta": "<mask>"}
NER_TEXTS = ("john smith works for google in london.", "mary met the president of france in paris yesterday.")
TEXTS = ("the film was wonderful and the music was excellent.", "a terrible day, the food was awful!")
MASKED_TEXTS = ("the {} is good.", "she went to the {} in berlin.")
ZERO_SHOT_TEXT = "the president met the minister of the government in rome."
ZERO_SHOT_LABELS = ["music", "food", "money"]
TOLERANCE = 1e-4  # on probabilities


def task_of(case: str) -> str:
    return case.split("-", 1)[1]


def family_of(case: str) -> str:
    return case.split("-", 1)[0]


def run_side(eland: ElandEnv, command: str, request: Any, cwd: Path | None = None) -> Any:
    """One run of `eland_side.py` in eland's virtualenv; its answer is the last line it prints."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        [str(eland.python), str(SIDE), command],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, f"eland_side.py {command} failed:\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def eland() -> ElandEnv:
    return eland_env()


@pytest.fixture(scope="module")
def vocabularies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[Any]]]:
    """The project's tiny vocabularies, as eland uploads them: BERT word pieces, RoBERTa's BPE with merges."""
    roberta = tiny_tokenizer(tmp_path_factory.mktemp("roberta-tokenizer"), "roberta")
    return {"bert": {"vocabulary": list(VOCABULARY)}, "roberta": uploaded_vocabulary(roberta)}


@pytest.fixture(scope="module")
def models(eland: ElandEnv, vocabularies: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case's model, saved by transformers 4 in eland's virtualenv; returns their folder."""
    out = tmp_path_factory.mktemp("eland-models")
    specs = [
        {
            "name": case,
            "family": family_of(case),
            "head": "Model" if task_of(case) == "text_embedding" else HEADS[task_of(case)][0],
            "labels": [] if task_of(case) == "text_embedding" else list(HEADS[task_of(case)][1]),
            "sentence_transformers": task_of(case) == "text_embedding",
        }
        for case in CASES
    ]
    request = {"out": str(out), "models": specs, "vocabularies": vocabularies}
    built = run_side(eland, "build", {**request, "max_length": MAX_LENGTH, "hidden_size": HIDDEN_SIZE})
    assert built == sorted(CASES)
    return out


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path_factory.mktemp("eland-node") / "data").start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def es(node: NodeProcess) -> Elasticsearch:
    return node.client()


def import_args(url: str, case: str, *extra: str) -> list[str]:
    return ["--url", url, "--hub-model-id", case, "--task-type", task_of(case), "--start", *extra]


@pytest.fixture(scope="module")
def imported(eland: ElandEnv, models: Path, node: NodeProcess, es: Elasticsearch) -> dict[str, Any]:
    """eland's CLI run for every case against the node, then eland's own `PyTorchModel.list`, and the state each
    deployment was left in before any test moved the cores between them."""
    imports = {case: import_args(node.url, case) for case in CASES}
    outcome = run_side(eland, "import", {"url": node.url, "imports": imports}, cwd=models)
    outcome["states"] = {case: deployment_state(es, case) for case in CASES if case not in outcome["failures"]}
    return outcome


@pytest.fixture(scope="module")
def expected(
    eland: ElandEnv, models: Path, imported: dict[str, Any], es: Elasticsearch, vocabularies: dict[str, Any]
) -> dict[str, Any]:
    """Every case's reference outputs from transformers, in one run."""
    jobs = {case: _job(case, models / case, es, vocabularies[family_of(case)]) for case in CASES}
    return run_side(eland, "expect", jobs)


def _job(case: str, directory: Path, es: Elasticsearch, vocabulary: dict[str, Any]) -> dict[str, Any]:
    task, mask = task_of(case), MASKS[family_of(case)]
    if task == "text_embedding":
        return {"kind": "embeddings", "dir": str(directory), "texts": TEXTS}
    if task == "zero_shot_classification":
        return {"kind": "row_logits", "dir": str(directory), "rows": zero_shot_rows(es, case, vocabulary)}
    texts = {"ner": NER_TEXTS, "fill_mask": [text.format(mask) for text in MASKED_TEXTS]}.get(task, TEXTS)
    head = HEADS[task][0]
    return {
        "kind": "tokens_and_logits",
        "dir": str(directory),
        "head": head,
        "texts": texts,
        "decode": task == "fill_mask",
    }


def zero_shot_rows(es: Elasticsearch, model_id: str, vocabulary: dict[str, Any]) -> list[list[int]]:
    """The pair rows Elasticsearch builds, one per label, by the node's tokenizer over the uploaded vocabulary."""
    config = stored_config(es, model_id)["inference_config"]["zero_shot_classification"]
    tokenizer = build_tokenizer(config["tokenization"], vocabulary)
    truncate = next(iter(config["tokenization"].values()))["truncate"]
    hypotheses = [config["hypothesis_template"].replace("{}", label, 1) for label in ZERO_SHOT_LABELS]
    rows = [tokenizer.tokenize_pair(ZERO_SHOT_TEXT, hypothesis, truncate).ids for hypothesis in hypotheses]
    # Rows of one length, so none is padded: Elasticsearch pads the attention mask with the pad id, transformers never.
    assert len({len(row) for row in rows}) == 1, rows
    return rows


def stored_config(es: Elasticsearch, model_id: str) -> dict[str, Any]:
    return es.ml.get_trained_models(model_id=model_id)["trained_model_configs"][0]


def deployment_state(es: Elasticsearch, model_id: str) -> str:
    return es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]["deployment_stats"]["state"]


def serving(es: Elasticsearch, model_id: str) -> None:
    """Give `model_id` this node's cores. Like an Elasticsearch ML node with two processors, the node allocates two
    single-thread deployments and leaves the rest waiting, so the others are stopped and this one is started again if
    an earlier test stopped it."""
    for stats in es.ml.get_trained_models_stats(model_id="*")["trained_model_stats"]:
        if stats["model_id"] != model_id and "deployment_stats" in stats:
            es.ml.stop_trained_model_deployment(model_id=stats["model_id"], force=True)
    if "deployment_stats" not in es.ml.get_trained_models_stats(model_id=model_id)["trained_model_stats"][0]:
        es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started", timeout="120s")
    deadline = time.monotonic() + 120
    while deployment_state(es, model_id) != "started" and time.monotonic() < deadline:
        time.sleep(0.2)


def infer(es: Elasticsearch, model_id: str, texts: Any, **update: Any) -> list[dict[str, Any]]:
    """Through the official client, with `update` as the task's `inference_config`, once the model has the cores."""
    serving(es, model_id)
    docs = [{"text_field": text} for text in texts]
    config = {task_of(model_id): update} if update else None
    response = es.ml.infer_trained_model(model_id=model_id, docs=docs, inference_config=config, timeout="60s")
    return response["inference_results"]


def softmax(logits: Any) -> np.ndarray:
    scores = np.asarray(logits, dtype=np.float64)
    exps = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def top_classes(result: dict[str, Any]) -> tuple[list[str], list[float]]:
    entries = result["top_classes"]
    return [entry["class_name"] for entry in entries], [entry["class_probability"] for entry in entries]


# the module's tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_eland_cli_imports_and_starts(case: str, imported: dict[str, Any], es: Elasticsearch) -> None:
    assert case not in imported["failures"], imported["failures"][case]
    config = stored_config(es, case)
    assert config["model_type"] == "pytorch"
    assert list(config["inference_config"]) == [task_of(case)]
    assert imported["states"][case] in ("starting", "started")  # eland's --start made the deployment
    serving(es, case)
    assert deployment_state(es, case) == "started"


def test_eland_lists_every_imported_model(imported: dict[str, Any], es: Elasticsearch) -> None:
    """`PyTorchModel.list` reads `GET _ml/trained_models/*?allow_no_match=true`: pytorch models only."""
    assert imported["listed"] == sorted(CASES)
    listing = es.ml.get_trained_models(model_id="*", allow_no_match=True)
    assert {config["model_id"] for config in listing["trained_model_configs"]} >= set(CASES)


@pytest.mark.parametrize("case", [case for case in CASES if task_of(case) == "ner"])
def test_ner_matches_transformers(case: str, expected: dict[str, Any], es: Elasticsearch) -> None:
    labels = list(HEADS["ner"][1])
    for result, reference in zip(infer(es, case, NER_TEXTS), expected[case], strict=True):
        want = expected_entities(reference, labels)
        got = [(e["class_name"], e["start_pos"], e["end_pos"]) for e in result["entities"]]
        assert got == [(e["class_name"], e["start_pos"], e["end_pos"]) for e in want]
        assert [e["class_probability"] for e in result["entities"]] == pytest.approx(
            [e["class_probability"] for e in want], abs=TOLERANCE
        )


def expected_entities(reference: dict[str, Any], labels: list[str]) -> list[dict[str, Any]]:
    """Elasticsearch's NER rule from the reference's per-token logits: each word's tokens' probabilities
    averaged, its best tag kept; a `B-` tag, or another entity, starts a new entity; scores averaged."""
    probabilities = softmax(reference["logits"])
    words: dict[int, list[int]] = {}
    for token, word in enumerate(reference["word_ids"]):
        if word is not None:
            words.setdefault(word, []).append(token)
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for tokens in words.values():
        mean = probabilities[tokens].mean(axis=0)
        label = labels[int(mean.argmax())]
        start, end = reference["offsets"][tokens[0]][0], reference["offsets"][tokens[-1]][1]
        if label == "O":
            current = None
        elif current is not None and label.startswith("I-") and label[2:] == current["class_name"]:
            current["scores"].append(mean.max())
            current["end_pos"] = end
        else:
            current = {"class_name": label[2:], "scores": [mean.max()], "start_pos": start, "end_pos": end}
            entities.append(current)
    return [{**entity, "class_probability": float(np.mean(entity["scores"]))} for entity in entities]


@pytest.mark.parametrize("case", [case for case in CASES if task_of(case) == "text_classification"])
def test_text_classification_matches_transformers(case: str, expected: dict[str, Any], es: Elasticsearch) -> None:
    labels = list(HEADS["text_classification"][1])
    for result, reference in zip(infer(es, case, TEXTS, num_top_classes=-1), expected[case], strict=True):
        probabilities = softmax(reference["logits"])
        order = np.argsort(-probabilities, kind="stable")
        assert result["predicted_value"] == labels[order[0]]
        assert result["prediction_probability"] == pytest.approx(probabilities[order[0]], abs=TOLERANCE)
        names, values = top_classes(result)
        assert names == [labels[i] for i in order]
        assert values == pytest.approx(probabilities[order].tolist(), abs=TOLERANCE)


@pytest.mark.parametrize("case", [case for case in CASES if task_of(case) == "text_embedding"])
def test_text_embedding_matches_sentence_transformers(case: str, expected: dict[str, Any], es: Elasticsearch) -> None:
    for result, reference in zip(infer(es, case, TEXTS), expected[case], strict=True):
        got, want = np.asarray(result["predicted_value"]), np.asarray(reference)
        assert got.shape == want.shape == (HIDDEN_SIZE,)
        assert got @ want / (np.linalg.norm(got) * np.linalg.norm(want)) >= 0.999


@pytest.mark.parametrize("case", [case for case in CASES if task_of(case) == "fill_mask"])
def test_fill_mask_matches_transformers(
    case: str, expected: dict[str, Any], es: Elasticsearch, vocabularies: dict[str, Any]
) -> None:
    mask = MASKS[family_of(case)]
    mask_id = vocabularies[family_of(case)]["vocabulary"].index(mask)
    texts = [text.format(mask) for text in MASKED_TEXTS]
    for text, result, reference in zip(texts, infer(es, case, texts), expected[case], strict=True):
        probabilities = softmax(reference["logits"][reference["ids"].index(mask_id)])
        top = np.argsort(-probabilities, kind="stable")[:5]
        words = [reference["decoded"][i].strip() for i in top]
        names, values = top_classes(result)
        assert names == words
        assert values == pytest.approx(probabilities[top].tolist(), abs=TOLERANCE)
        assert result["predicted_value"] == words[0]
        assert result["predicted_value_sequence"] == text.replace(mask, words[0])


@pytest.mark.parametrize("case", [case for case in CASES if task_of(case) == "zero_shot_classification"])
def test_zero_shot_matches_transformers_on_elasticsearch_rows(
    case: str, expected: dict[str, Any], es: Elasticsearch
) -> None:
    (result,) = infer(es, case, [ZERO_SHOT_TEXT], labels=ZERO_SHOT_LABELS)
    entailment = list(HEADS["zero_shot_classification"][1]).index("entailment")
    probabilities = softmax(np.asarray(expected[case])[:, entailment])
    order = np.argsort(-probabilities, kind="stable")
    assert result["predicted_value"] == ZERO_SHOT_LABELS[order[0]]
    names, values = top_classes(result)
    assert names == [ZERO_SHOT_LABELS[i] for i in order]
    assert values == pytest.approx(probabilities[order].tolist(), abs=TOLERANCE)


def test_clear_previous_replaces_a_deployed_model(
    eland: ElandEnv, models: Path, node: NodeProcess, es: Elasticsearch, imported: dict[str, Any]
) -> None:
    """The console script with `--clear-previous` stops and deletes the deployed model, then uploads and starts it
    again."""
    case = "bert-text_classification"
    created, answers = stored_config(es, case)["create_time"], infer(es, case, TEXTS)  # the others stopped
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [str(eland.script("eland_import_hub_model")), *import_args(node.url, case, "--clear-previous")]
    done = subprocess.run(command, cwd=models, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "Stopping deployment for model" in done.stderr and "Deleting model" in done.stderr
    assert stored_config(es, case)["create_time"] > created
    assert deployment_state(es, case) == "started"
    assert infer(es, case, TEXTS) == answers
