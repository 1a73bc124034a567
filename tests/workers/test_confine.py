"""The second wall: a model the operator trusts (no check at all) still cannot read the node's files or write outside
its worker's scratch directory, because the worker process is confined before it loads anything."""

from pathlib import Path

import landlockpy
import pytest
import torch
from torch import Tensor, nn

from tests.support.deploy import error_of, infer, start, uploaded_definition
from tests.support.node import module_node

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.skipif(landlockpy.abi_version() < 1, reason="this kernel does not provide Landlock"),
]

node = module_node("--trust-model", "reads-secret", "--trust-model", "writes-outside")
SECRET = b"the-callback-secret"


class ReadsFile(nn.Module):
    def __init__(self, source: str, size: int) -> None:
        super().__init__()
        self.source = source
        self.size = size

    def forward(self, ids: Tensor, mask: Tensor, types: Tensor, positions: Tensor) -> Tensor:
        data = torch.from_file(self.source, size=self.size, dtype=torch.uint8)
        return data.float().unsqueeze(0).expand(ids.size(0), self.size)


class WritesFile(nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, ids: Tensor, mask: Tensor, types: Tensor, positions: Tensor) -> Tensor:
        torch.save(ids, self.target)
        return mask.float()


def deployed(node, es, model_id: str, module: nn.Module, folder: Path) -> str:
    path = folder / f"{model_id}.pt"
    torch.jit.save(torch.jit.script(module), path)
    uploaded_definition(node.url, model_id, path)
    start(es, model_id)
    return model_id


def test_a_trusted_model_cannot_read_the_nodes_secret(es, node, tmp_path):
    secret = node.data_dir / "callback_secret"
    secret.write_bytes(SECRET)
    model_id = deployed(node, es, "reads-secret", ReadsFile(str(secret), len(SECRET)), tmp_path)
    try:
        status, kind, reason = error_of(lambda: infer(es, model_id, ["my words"]))
        workers = es.perform_request("GET", "/_sidecar/status").body["deployments"][model_id]["workers"]
    finally:
        es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_stop")

    assert (status, kind) == (500, "status_exception")
    assert reason.startswith("Error in inference process: [") and "Permission denied" in reason
    assert str(float(SECRET[0])) not in reason
    assert workers[0]["confinement"].startswith(f"landlock ABI {landlockpy.abi_version()}: files, tcp")


def test_a_trusted_model_cannot_write_outside_its_scratch_directory(es, node, tmp_path):
    """`aten::save` ignores a failed open, so the answer is served; the file must not exist."""
    target = tmp_path / "written-by-model"
    model_id = deployed(node, es, "writes-outside", WritesFile(str(target)), tmp_path)
    try:
        answers = infer(es, model_id, ["my words"])
    finally:
        es.perform_request("POST", f"/_ml/trained_models/{model_id}/deployment/_stop")

    assert answers == [{"predicted_value": [[1.0, 1.0]]}]
    assert not target.exists()
