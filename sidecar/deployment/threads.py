"""The seed's thread rule, applied literally, the 8.3+ rule, and how workers are laid over the usable cores."""

from __future__ import annotations

from dataclasses import dataclass

from sidecar.workers.cores import cores_for


@dataclass(frozen=True)
class ThreadPlan:
    inference_threads: int  # torch threads per worker
    model_threads: int  # worker processes
    worker_cores: tuple[tuple[int, ...], ...]
    reason: str  # non-empty when a value was lowered or workers must share cores


def effective_threads(inference_threads: int, model_threads: int, hardware_threads: int) -> tuple[int, int]:
    """Lower the requested values as the seed says.

    A value *greater than* the hardware threads becomes one less than them (at least 1); then, if the sum is
    still greater, inference_threads drops to max(1, hw - model_threads). Elasticsearch's native code uses >=
    here; the seed's wording wins.
    """
    hw = max(1, hardware_threads)
    if inference_threads > hw:
        inference_threads = max(1, hw - 1)
    if model_threads > hw:
        model_threads = max(1, hw - 1)
    if inference_threads + model_threads > hw:
        inference_threads = max(1, hw - model_threads)
    return inference_threads, model_threads


def plan(inference_threads: int, model_threads: int, cores: list[int]) -> ThreadPlan:
    inference, model = effective_threads(inference_threads, model_threads, len(cores))
    layout = tuple(cores_for(i, inference, cores) for i in range(model))
    reasons = []
    values = (("model_threads", model_threads, model), ("inference_threads", inference_threads, inference))
    lowered = [f"{name} [{asked}] lowered to [{used}]" for name, asked, used in values if asked != used]
    if lowered:
        reasons.append(f"{' and '.join(lowered)} for the [{len(cores)}] usable cores")
    if inference * model > len(cores):
        reasons.append(
            f"model_threads [{model}] x inference_threads [{inference}] exceeds the [{len(cores)}] usable cores; "
            "workers share cores round robin"
        )
    return ThreadPlan(inference, model, layout, "; ".join(reasons))


def allocation_plan(threads_per_allocation: int, allocations: int, cores: list[int]) -> ThreadPlan:
    """From 8.3 on the planner has already fitted the allocations into this node's cores: nothing is lowered."""
    layout = tuple(cores_for(i, threads_per_allocation, cores) for i in range(allocations))
    return ThreadPlan(threads_per_allocation, allocations, layout, "")
