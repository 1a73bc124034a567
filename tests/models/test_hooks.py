"""Calling a module runs more than its forward: hooks and methods Python may call are checked as well."""

from pathlib import Path
from typing import Callable, Tuple

import pytest
import torch
from torch import Tensor, nn

from sidecar.models.safety import UnsafeModelError, load_checked

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Harmless(nn.Module):
    """A forward that does nothing wrong; what it carries (hooks, methods) does."""

    def __init__(self, target: str, source: str) -> None:
        super().__init__()
        self.target = target
        self.source = source

    def forward(self, x: Tensor) -> Tensor:
        return x


class Outer(nn.Module):
    def __init__(self, inner: Harmless) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(x)


class Sized(Harmless):
    """`len(module)` would run this: a method no graph calls, yet Python can."""

    @torch.jit.export
    def __len__(self) -> int:
        torch.ops.aten.save(torch.ones(1), self.target)
        return 1


def saves_inputs(module: Harmless, inputs: Tuple[Tensor]) -> None:
    torch.ops.aten.save(inputs[0], module.target)


def reads_a_file(module: Harmless, inputs: Tuple[Tensor], output: Tensor) -> Tensor:
    return output + torch.from_file(module.source, size=1)


def hooked_top(target: str, source: str) -> nn.Module:
    module = Harmless(target, source)
    module.register_forward_pre_hook(saves_inputs)
    return module


def hooked_inner(target: str, source: str) -> nn.Module:
    inner = Harmless(target, source)
    inner.register_forward_pre_hook(saves_inputs)
    return Outer(inner)


def reading_top(target: str, source: str) -> nn.Module:
    module = Harmless(target, source)
    module.register_forward_hook(reads_a_file)
    return module


@pytest.mark.parametrize(
    ("build", "operation"),
    [
        (hooked_top, "aten::save"),
        (hooked_inner, "aten::save"),
        (reading_top, "aten::from_file"),
        (Sized, "aten::save"),
    ],
    ids=["pre-hook", "pre-hook-of-submodule", "forward-hook", "dunder-method"],
)
def test_what_runs_besides_forward_is_checked(
    tmp_path: Path, build: Callable[[str, str], nn.Module], operation: str
) -> None:
    target, source = tmp_path / "written", tmp_path / "secret"
    source.write_bytes(b"\x07" * 4)
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(build(str(target), str(source))), path)

    with pytest.raises(UnsafeModelError, match=rf"forbidden operations? \[.*{operation}.*\]"):
        load_checked(path)
    assert not target.exists()


def test_hooks_do_run_when_the_module_is_called(tmp_path: Path) -> None:
    """Why hooks matter: an unchecked load runs the top module's pre-hook on every call."""
    target = tmp_path / "written"
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(hooked_top(str(target), "")), path)

    load_checked(path, trusted=True)(torch.ones(1))

    assert target.exists()
