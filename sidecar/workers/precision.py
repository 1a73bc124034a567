"""Which precision a worker runs its model in, decided once after loading by measurement.

Where the CPU can do bf16, two candidates run the same fixed documents as fp32 does: the graph with its floating
constants in bfloat16 (`parameters`) and the fp32 graph under `torch.autocast` (`autocast`). Each must give the
task's own answers (the task's `parity` criterion) and is timed over a few batches; the fastest one that passes is
kept if it beats fp32, otherwise fp32 is. A deployment or the node may insist on fp32 or bf16.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sidecar.models.tasks.base import Task
from sidecar.workers.hardware import bf16_support

Engine = Callable[..., Any]  # input tensors -> the graph's output
PROBE_TEXTS = (
    "John Smith works for the Acme company in New York City and lives in Paris.",
    "The film was long and boring, but the music was wonderful.",
    "What time does the bank open tomorrow morning?",
    "Prices rose again this year.",
    "Mary met the president of the United Nations in Berlin last week, and they talked about water, food and peace.",
    "A good book.",
)
TIMED_DOCS = 32  # documents per timed batch: the node's default max_batch_docs
TIMED_BATCHES = 3  # per engine, after one untimed batch; the fastest counts
MIN_GAIN = 1.05  # a candidate must beat fp32 by this much: less is within the noise of a shared machine
_FLOAT32, _BFLOAT16 = 6, 15  # torch's ScalarType codes, as a graph's dtype constants hold them


class Runner(Protocol):
    """What the probe needs of a worker's runner: documents through an engine, as `infer` runs them."""

    task: Task

    def results(self, docs: list[tuple[str, dict[str, Any]]], engine: Engine) -> list[Any]: ...

    def forward(self, windows: list[Any], engine: Engine) -> list[Any]: ...


@dataclass
class Candidate:
    how: str  # "parameters" | "autocast"
    engine: Engine | None
    parity: str | None = None  # why its answers differ from fp32's; None when they match
    docs_per_second: float = 0.0

    def describe(self) -> dict[str, Any]:
        return {"how": self.how, "parity": self.parity or "passes", "docs_per_second": round(self.docs_per_second, 1)}


@dataclass(frozen=True)
class Choice:
    precision: str  # "fp32" | "bf16"
    how: str | None  # for bf16: "parameters" | "autocast"
    reason: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {"precision": self.precision, "how": self.how, "reason": self.reason, "candidates": self.candidates}


def choose(runner: Runner, model: Any, reload: Callable[[], Any], requested: str, flags: frozenset[str]) -> tuple[
    Engine, Choice
]:
    """The engine to serve with and why. `reload` gives a second copy of the fp32 model, for converting."""
    import torch

    if requested == "fp32":
        return model, Choice("fp32", None, "fp32 was asked for")
    unsupported = bf16_support(flags, torch)
    if unsupported is not None and requested == "auto":
        return model, Choice("fp32", None, f"{unsupported}: fp32, without a probe")
    candidates = [Candidate("parameters", _bf16_parameters(reload)), Candidate("autocast", _autocast(model, torch))]
    try:
        fp32_speed = _measure(runner, model, candidates)
    except Exception as exc:  # the model fails in fp32 on the probe's documents: serve it as it is, unprobed
        return model, Choice("fp32", None, f"the probe could not run the model: {exc}".splitlines()[0])
    described = [{"how": None, "parity": "reference", "docs_per_second": round(fp32_speed, 1)}]
    described += [c.describe() for c in candidates]
    if requested == "bf16":
        return _forced(model, candidates, unsupported, described)
    passing = [c for c in candidates if c.parity is None]
    if not passing:
        why = "; ".join(f"{c.how}: {c.parity}" for c in candidates)
        return model, Choice("fp32", None, f"bf16 changes the answers ({why})", described)
    best = max(passing, key=lambda c: c.docs_per_second)
    if best.docs_per_second < MIN_GAIN * fp32_speed:
        reason = f"bf16 keeps parity but is not faster ({_speeds(best, fp32_speed)})"
        return model, Choice("fp32", None, reason, described)
    assert best.engine is not None
    return best.engine, Choice("bf16", best.how, f"bf16 keeps parity and is faster ({_speeds(best, fp32_speed)})", described)


def _forced(
    model: Any, candidates: list[Candidate], unsupported: str | None, described: list[dict[str, Any]]
) -> tuple[Engine, Choice]:
    """bf16 as asked: the faster form that runs at all, whatever parity says (it is reported)."""
    runnable = [c for c in candidates if c.engine is not None and c.docs_per_second > 0]
    if not runnable:
        return model, Choice("fp32", None, "bf16 was asked for but no bf16 form of this model runs", described)
    best = max(runnable, key=lambda c: c.docs_per_second)
    assert best.engine is not None
    reason = "bf16 was asked for"
    if unsupported is not None:
        reason += f"; {unsupported}, so it is emulated and likely slower than fp32"
    if best.parity is not None:
        reason += f"; it changes the answers ({best.parity})"
    return best.engine, Choice("bf16", best.how, reason, described)


def _measure(runner: Runner, model: Engine, candidates: list[Candidate]) -> float:
    """Check each candidate's answers against fp32's and time each; returns fp32's docs/s."""
    docs = runner.task.probe_docs(list(PROBE_TEXTS))
    reference = runner.results(docs, model)
    windows = _timed_windows(runner, docs)
    for candidate in candidates:
        if candidate.engine is None:
            candidate.parity = "the graph could not be converted to bfloat16"
            continue
        try:
            candidate.parity = _compare(runner.task, reference, runner.results(docs, candidate.engine))
            candidate.docs_per_second = _speed(runner, windows, candidate.engine)
        except Exception as exc:  # a graph that cannot run in bf16 is a candidate that fails, not a failed load
            candidate.parity = f"it does not run: {exc}".splitlines()[0]
            candidate.docs_per_second = 0.0
    return _speed(runner, windows, model)


def _compare(task: Task, reference: list[Any], answers: list[Any]) -> str | None:
    for number, (expected, actual) in enumerate(zip(reference, answers, strict=True)):
        if isinstance(expected, tuple) or isinstance(actual, tuple):  # an error answer: must be the same error
            why = None if expected == actual else "a document's error differs"
        else:
            why = task.parity(expected, actual)
        if why is not None:
            return f"probe document {number}: {why}"
    return None


def _timed_windows(runner: Runner, docs: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    rows = [window for text, options in docs for window in runner.task.preprocess(text, options).rows]
    return (rows * (TIMED_DOCS // len(rows) + 1))[:TIMED_DOCS]


def _speed(runner: Runner, windows: list[Any], engine: Engine) -> float:
    runner.forward(windows, engine)  # warm-up: the graph executor specialises on its first runs
    best = float("inf")
    for _ in range(TIMED_BATCHES):
        started = time.perf_counter()
        runner.forward(windows, engine)
        best = min(best, time.perf_counter() - started)
    return len(windows) / best


def _speeds(best: Candidate, fp32: float) -> str:
    return f"{best.how}: {best.docs_per_second:.0f} docs/s, fp32: {fp32:.0f} docs/s"


def _autocast(model: Any, torch: Any) -> Engine:
    def run(*inputs: Any) -> Any:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(*inputs)

    return run


def _bf16_parameters(reload: Callable[[], Any]) -> Engine | None:
    """A fresh copy of the model with its floating constants in bfloat16, or None when that cannot be done.

    A frozen trace holds its weights as graph constants, not parameters, so `module.to()` leaves them alone: the
    constants are converted in the graph itself, and so are float32 dtype arguments (the attention mask's
    `.to(float32)`), else bf16 activations would meet fp32 tensors. Inputs stay int64; outputs come back bf16.
    """
    import torch

    try:
        module = reload()
        _convert(module.graph, module.graph, torch)
    except Exception:
        return None
    for parameter in module.parameters():  # an unfrozen trace keeps some as parameters
        parameter.data = parameter.data.to(torch.bfloat16) if parameter.is_floating_point() else parameter.data
    return module


def _convert(graph: Any, block: Any, torch: Any) -> None:
    """Convert `block` (the graph itself, or a block of one of its nodes) in place."""
    for node in list(block.nodes()):
        for inner in node.blocks():
            _convert(graph, inner, torch)
        if node.kind() == "prim::Constant":
            value = node.output().toIValue() if node.output().type().kind() == "TensorType" else None
            if value is not None and value.is_floating_point():
                converted = value.to(torch.bfloat16)
                node.t_("value", converted)
                node.output().inferTypeFrom(converted)
            continue
        schema = node.schema()
        if schema == "(no schema)":
            continue
        for index, (value, argument) in enumerate(zip(node.inputs(), torch._C.parse_schema(schema).arguments)):
            if argument.name == "dtype" and value.node().kind() == "prim::Constant" and value.toIValue() == _FLOAT32:
                constant = graph.insertConstant(_BFLOAT16)
                constant.node().moveBefore(node)
                node.replaceInput(index, constant)
