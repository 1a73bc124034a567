"""The precision probe: what a worker decides after loading, for every task, forced either way, and on a CPU
without bf16; then a real node serving one model in fp32 and in bf16."""

from __future__ import annotations

import asyncio
import os

from pathlib import Path
from typing import Any

import pytest
import torch

from sidecar.models.tasks import TASKS, apply_update, validate_task_config
from sidecar.workers.precision import MIN_GAIN
from sidecar.workers.pool import WorkerPool
from sidecar.workers.spec import WorkerSpec
from tests.support.deploy import error_of, infer, start, uploaded
from tests.support.node import module_node

BF16 = frozenset({"avx512_bf16"})  # what this CPU is said to offer; torch's own check must agree for a probe
TEXTS = ["John Smith works for Acme in Paris.", "The music was wonderful.", "What a terrible day!"]


def _has_bf16() -> bool:
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


needs_bf16 = pytest.mark.skipif(not _has_bf16(), reason="the probe runs only where the CPU has bf16")


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """`traced(task)`: a tiny BERT for `task` traced as eland traces it, built once per module."""
    built: dict[str, Any] = {}

    def make(task: str) -> Any:
        if task not in built:
            built[task] = _trace(task, tmp_path_factory.mktemp(task))
        return built[task]

    return make


def _trace(task: str, root: Path) -> Any:
    """The importer's own trace where it knows the task; otherwise the head's logits as eland's graph returns them
    (question answering: start and end stacked as `[2, rows, L]`)."""
    import warnings

    import torch
    import transformers

    from sidecar.importer.trace import BERT, Positional, TracedModel, trace_model
    from tests.support.models import HEADS, MAX_LENGTH, tiny_model, tiny_sentence_bert, uploaded_vocabulary

    if task == "text_embedding":
        return trace_model(tiny_sentence_bert(root / "hf"), task, root / "traced")
    directory = tiny_model(root / "hf", "bert", task)
    if task in ("ner", "text_classification"):
        return trace_model(directory, task, root / "traced")
    head = HEADS[task][0]
    model = getattr(transformers, f"Bert{head}").from_pretrained(directory, return_dict=False).eval()
    module = _StartEnd(Positional(model, BERT.inputs)) if task == "question_answering" else Positional(model, BERT.inputs)
    ids = torch.tensor([[2, 60, 61, 3, 62, 3], [2, 62, 3, 63, 3, 0]])
    example = (ids, (ids != 0).long(), torch.zeros_like(ids), torch.arange(6).expand_as(ids))
    definition = root / "traced_pytorch_model.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch and transformers warn on every trace
        torch.jit.save(torch.jit.freeze(torch.jit.trace(module.eval(), example, check_trace=False)), str(definition))
    settings = {"tokenization": {"bert": {"max_sequence_length": MAX_LENGTH, "do_lower_case": True}}}
    if task == "zero_shot_classification":
        settings["classification_labels"] = list(HEADS[task][1])
    config = {"inference_config": {task: settings}, "input": {"field_names": ["text_field"]}, "model_type": "pytorch"}
    return TracedModel(task, definition, config, uploaded_vocabulary(directory))


class _StartEnd(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        start, end = self.model(*inputs)[:2]
        return torch.stack([start, end])


@pytest.fixture(scope="module")
def near_tie(tmp_path_factory):
    """A classifier whose two logits differ by 1e-3 on top of 100: fp32 says POSITIVE, while bf16, which has steps
    of 0.5 at 100, makes them equal and the tie goes to the first label."""
    import torch
    from transformers import BertForSequenceClassification

    from sidecar.importer.trace import trace_model
    from tests.support.models import tiny_bert

    directory = tiny_bert(tmp_path_factory.mktemp("near-tie"), "text_classification")
    model = BertForSequenceClassification.from_pretrained(directory)
    with torch.no_grad():
        model.classifier.weight[1] = model.classifier.weight[0]
        model.classifier.bias.copy_(torch.tensor([100.0, 100.001]))
    model.save_pretrained(directory)
    return trace_model(directory, "text_classification", tmp_path_factory.mktemp("near-tie-traced"))


def probed(traced: Any, precision: str = "auto", flags: frozenset[str] = BF16) -> dict[str, Any]:
    """The precision a real worker process chose after loading `traced`, with its measurements."""
    task, config = next(iter(traced.config["inference_config"].items()))
    spec = WorkerSpec(
        "probe", traced.definition, task, validate_task_config(task, config), traced.vocabulary,
        (min(os.sched_getaffinity(0)),), 1, 8192, False, 100_000, precision=precision, cpu_flags=flags,
    )  # fmt: skip

    async def run() -> dict[str, Any]:
        pool = WorkerPool([spec], queue_capacity=8, max_batch_docs=32)
        await pool.start()
        try:
            return pool.describe_workers()[0]["precision"]
        finally:
            await pool.stop()

    return asyncio.run(run())


def follows_the_rule(choice: dict[str, Any]) -> None:
    """The faster candidate that keeps parity, if it beats fp32 by the margin; fp32 otherwise."""
    fp32, *candidates = choice["candidates"]
    passing = [c for c in candidates if c["parity"] == "passes"]
    best = max(passing, key=lambda c: c["docs_per_second"], default=None)
    if best is not None and best["docs_per_second"] >= MIN_GAIN * fp32["docs_per_second"]:
        assert (choice["precision"], choice["how"]) == ("bf16", best["how"])
    else:
        assert (choice["precision"], choice["how"]) == ("fp32", None)


# tiny random models hold their answers in bf16 for these tasks; question answering's spans and
# text_similarity's raw scores are checked too, but their verdict depends on the random weights
@needs_bf16
@pytest.mark.parametrize(
    "task", ["text_embedding", "ner", "text_classification", "zero_shot_classification", "fill_mask",
             "text_expansion", "pass_through", "question_answering", "text_similarity"],
)  # fmt: skip
def test_the_probe_measures_both_candidates_and_keeps_the_faster_that_passes(traced, task):
    choice = probed(traced(task))
    assert [c["how"] for c in choice["candidates"]] == [None, "parameters", "autocast"]
    assert all(c["docs_per_second"] > 0 for c in choice["candidates"])
    follows_the_rule(choice)


@needs_bf16
def test_a_model_whose_answers_bf16_changes_stays_in_fp32(near_tie):
    choice = probed(near_tie)
    assert (choice["precision"], choice["how"]) == ("fp32", None)
    assert choice["reason"].startswith("bf16 changes the answers (parameters: probe document 0: top label [NEGATIVE]")
    assert all(c["parity"].endswith("top label [NEGATIVE] instead of [POSITIVE]") for c in choice["candidates"][1:])


def test_bf16_asked_for_is_used_even_where_it_changes_the_answers_and_says_so(near_tie):
    choice = probed(near_tie, "bf16")
    assert choice["precision"] == "bf16" and choice["how"] in ("parameters", "autocast")
    assert choice["reason"].startswith("bf16 was asked for")
    assert "it changes the answers (probe document 0: top label [NEGATIVE] instead of [POSITIVE])" in choice["reason"]
    if not _has_bf16():
        assert "so it is emulated" in choice["reason"]


def test_fp32_asked_for_runs_no_probe(near_tie):
    assert probed(near_tie, "fp32") == {"precision": "fp32", "how": None, "reason": "fp32 was asked for", "candidates": []}


def test_a_cpu_without_bf16_flags_runs_fp32_without_a_probe(near_tie):
    choice = probed(near_tie, flags=frozenset({"avx512_vnni", "avx_vnni"}))
    assert choice == {
        "precision": "fp32",
        "how": None,
        "reason": "this CPU has none of amx_bf16, avx512_bf16: fp32, without a probe",
        "candidates": [],
    }


# a real node told its CPU has no bf16: auto runs fp32 without a probe, bf16 asked for is emulated and says so
node = module_node("--cpu-flags=")


def deployed(es, node, wanted: dict[str, tuple[Any, str | None]]):
    """Each model id uploaded from its trace and started with its precision (none: the node's); stopped after."""
    for model_id, (traced, precision) in wanted.items():
        uploaded(node.url, traced, model_id)
        start(es, model_id, **({} if precision is None else {"precision": precision}))
    yield
    for model_id in wanted:
        es.ml.stop_trained_model_deployment(model_id=model_id)


def node_precision(es, model_id: str) -> dict[str, Any]:
    [stats] = es.ml.get_trained_models_stats(model_id=model_id).body["trained_model_stats"]
    [entry] = stats["deployment_stats"]["nodes"]
    return entry["precision"]


@pytest.fixture(scope="class")
def minilms(es, node, traced_minilm):
    yield from deployed(es, node, {"minilm-fp32": (traced_minilm, "fp32"), "minilm-bf16": (traced_minilm, "bf16")})


@pytest.fixture(scope="class")
def classifiers(es, node, traced_classifier):
    wanted = {"classifier-auto": (traced_classifier, None), "classifier-bf16": (traced_classifier, "bf16")}
    yield from deployed(es, node, wanted)


@pytest.mark.usefixtures("minilms")
class TestMiniLM:
    """Two deployments at a time: each takes one of the machine's two cores."""

    def test_stats_say_which_precision_each_deployment_runs_and_why(self, es):
        emulated = "bf16 was asked for; this CPU has none of amx_bf16, avx512_bf16, so it is emulated and likely slower"
        assert node_precision(es, "minilm-fp32") == {"precision": "fp32", "how": None, "reason": "fp32 was asked for"}
        assert node_precision(es, "minilm-bf16")["precision"] == "bf16"
        assert node_precision(es, "minilm-bf16")["reason"].startswith(emulated)

    def test_the_node_status_shows_each_workers_choice_with_its_measurements(self, es):
        status = es.perform_request("GET", "/_sidecar/status").body
        [worker] = status["deployments"]["minilm-bf16"]["workers"]
        assert [c["how"] for c in worker["precision"]["candidates"]] == [None, "parameters", "autocast"]
        assert status["deployments"]["minilm-bf16"]["precision"] == node_precision(es, "minilm-bf16")

    def test_bf16_embeddings_point_where_fp32_ones_do(self, es):
        import numpy as np

        fp32, bf16 = ([r["predicted_value"] for r in infer(es, m, TEXTS)] for m in ("minilm-fp32", "minilm-bf16"))
        for a, b in zip(fp32, bf16, strict=True):
            assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) >= 0.9999
        assert fp32 != bf16  # bf16 really ran: its numbers are not fp32's


@pytest.mark.usefixtures("classifiers")
class TestClassifier:

    def test_auto_on_a_cpu_without_bf16_is_fp32_without_a_probe(self, es):
        assert node_precision(es, "classifier-auto") == {
            "precision": "fp32", "how": None, "reason": "this CPU has none of amx_bf16, avx512_bf16: fp32, without a probe"
        }  # fmt: skip

    def test_bf16_classes_are_fp32_classes_within_1e_3(self, es):
        config = {"inference_config": {"text_classification": {"num_top_classes": -1}}}
        fp32, bf16 = (infer(es, model, TEXTS, **config) for model in ("classifier-auto", "classifier-bf16"))
        for a, b in zip(fp32, bf16, strict=True):
            assert a["predicted_value"] == b["predicted_value"]
            probabilities = {c["class_name"]: c["class_probability"] for c in a["top_classes"]}
            assert all(abs(probabilities[c["class_name"]] - c["class_probability"]) <= 1e-3 for c in b["top_classes"])
        assert fp32 != bf16


def test_an_unknown_precision_is_refused_at_start(es, node, traced_classifier):
    model_id = uploaded(node.url, traced_classifier, "classifier-fp16")
    assert error_of(lambda: start(es, model_id, precision="fp16")) == (
        400, "illegal_argument_exception", "[precision] must be one of [auto, fp32, bf16]; provided [fp16]"
    )  # fmt: skip
