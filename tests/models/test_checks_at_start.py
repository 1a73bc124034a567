"""The model checks through a real node: `_start` refuses hostile definitions with a 400 before anything of them runs,
and Elasticsearch's own test model deploys unchanged, without `--trust-model`."""

import base64
from pathlib import Path
from typing import Tuple

import pytest
import torch
from torch import Tensor, nn

from tests.support.deploy import error_of, infer, start, uploaded_definition
from tests.support.es_test_model import SUPER_SIMPLE_BASE64
from tests.support.node import module_node
from tests.support.zips import build, entries_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

node = module_node()


class QuietForward(nn.Module):
    """BERT's four inputs, a harmless forward; its hooks write and read files."""

    def __init__(self, target: str, source: str) -> None:
        super().__init__()
        self.target = target
        self.source = source

    def forward(self, ids: Tensor, mask: Tensor, types: Tensor, positions: Tensor) -> Tensor:
        return mask.float()


def writes(module: QuietForward, inputs: Tuple[Tensor, Tensor, Tensor, Tensor]) -> None:
    torch.ops.aten.save(inputs[0], module.target)


def reads(module: QuietForward, inputs: Tuple[Tensor, Tensor, Tensor, Tensor], output: Tensor) -> Tensor:
    return output + torch.from_file(module.source, size=1)


class WritesOnLoad(QuietForward):
    @torch.jit.export
    def __getstate__(self) -> Tuple[str, str, bool]:
        return (self.target, self.source, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, str, bool]) -> None:
        self.target, self.source, self.training = state
        torch.ops.aten.save(torch.ones(1), self.target)


def scripted(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), path)
    return path


def test_hooks_that_write_and_read_files_are_refused_at_start(es, node, tmp_path):
    target = tmp_path / "written-by-hook"
    model = QuietForward(str(target), str(node.data_dir / "sidecar.db"))
    model.register_forward_pre_hook(writes)
    model.register_forward_hook(reads)
    model_id = uploaded_definition(node.url, "hooked", scripted(model, tmp_path / "hooked.pt"))

    assert error_of(lambda: start(es, model_id)) == (
        400,
        "status_exception",
        f"Refusing to load model [{model_id}]: "
        "model definition uses forbidden operations [aten::from_file, aten::save]",
    )
    assert not target.exists()


def test_a_clean_archive_in_front_of_a_hostile_one_is_refused_at_start(es, node, tmp_path):
    target = tmp_path / "written-at-load"
    clean = scripted(QuietForward("", ""), tmp_path / "clean.pt").read_bytes()
    hostile = entries_of(scripted(WritesOnLoad(str(target), ""), tmp_path / "hostile.pt"))
    combined = tmp_path / "combined.pt"
    combined.write_bytes(clean + build(hostile, start=len(clean)))
    model_id = uploaded_definition(node.url, "two-archives", combined)

    status, kind, reason = error_of(lambda: start(es, model_id))

    assert (status, kind) == (400, "status_exception")
    assert reason.startswith(f"Refusing to load model [{model_id}]: model definition is not a readable TorchScript")
    assert "gap or overlap before the first record" in reason
    assert not target.exists()


def test_elasticsearchs_own_test_model_deploys_without_trust(es, node, tmp_path):
    definition = tmp_path / "simplemodel.pt"
    definition.write_bytes(base64.b64decode(SUPER_SIMPLE_BASE64))
    model_id = uploaded_definition(node.url, "test_model", definition)

    start(es, model_id)
    try:
        assert infer(es, model_id, ["my words"]) == [{"predicted_value": [[1.0, 1.0]]}]
    finally:
        es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_stop")
