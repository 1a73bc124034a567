"""Refuse TorchScript model definitions that could act beyond inference.

A TorchScript archive can run code while it is loaded (a class's `__setstate__`)
and its graph can read or write files and raw memory. Elasticsearch's native
process validates uploaded models before using them (ml-cpp 9.4+); this module
does the same for the workers: a torch-free scan of the archive before loading,
then a walk of the loaded forward graph against a deny-list and an allow-list.

torch is imported inside functions only, so the API process can import this
module for `UnsafeModelError` without loading torch.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# Node counts of frozen eland-style traces (PyTorch 2.13): 2-layer tiny BERT ~140
# (~210 unfrozen); all-MiniLM-L6-v2 with pooling and normalisation ~380; 24-layer
# BERT / RoBERTa / XLM-R (the "large" models) ~1,000-1,200 float or quantized;
# 24-layer DeBERTa-v2 ~3,600 (~5,400 unfrozen). A 48-layer xxlarge model roughly
# doubles those. 50,000 leaves ~5x room over the biggest of them while still
# bounding the walk of a hostile graph.
DEFAULT_MAX_NODES = 50_000

# Names whose presence in any record marks a class with custom state: loading
# calls `__setstate__`, and TorchScript pairs it with `__getstate__`.
LOAD_TIME_HOOKS = ("__setstate__", "__getstate__")

# Refused by name, whatever the allow-list says.
FORBIDDEN_OPERATIONS = frozenset({
    # files
    "aten::from_file",
    "aten::save",
    "debugprims::load_tensor",
    # raw memory: views at caller-chosen offsets and strides, or unchecked indexing
    "aten::as_strided",
    "aten::as_strided_",
    "aten::as_strided_copy",
    "aten::as_strided_scatter",
    "prims::as_strided",
    "prims::as_strided_scatter",
    "aten::_reshape_alias",
    "aten::_reshape_alias_copy",
    "aten::set_",
    "aten::_nested_view_from_buffer",
    "aten::_nested_view_from_buffer_copy",
    "aten::_unsafe_index",
    "aten::_unsafe_index_put",
    "aten::_unsafe_masked_index",
    "aten::_unsafe_masked_index_put_accumulate",
    "inductor::_reinterpret_tensor",
    "inductor::resize_storage_bytes_",
    # calls whose target cannot be followed (a module method the walk resolves is followed instead)
    "prim::CallFunction",
    "prim::CallMethod",
})

# Every operation seen in eland-style traces, float and dynamic-quantized:
# ml-cpp's reference traces of full-size BERT, RoBERTa, XLM-R, MPNet, DeBERTa,
# DistilBERT, ELECTRA, MobileBERT, DPR, ELSER and E5 models (PyTorch 2.7.1), plus
# tiny BERT, RoBERTa, XLM-R, MPNet, DeBERTa-v2, DistilBERT and ELECTRA models with
# every eland task head and all-MiniLM-L6-v2 with pooling, traced here with
# PyTorch 2.13 and transformers 5, frozen or not. Anything else is unsupported.
ALLOWED_OPERATIONS = frozenset({
    # graph plumbing and scalars
    "prim::Constant", "prim::GetAttr", "prim::If", "prim::NumToTensor",
    "prim::ListConstruct", "prim::ListUnpack", "prim::TupleConstruct", "prim::TupleUnpack",
    "prim::DictConstruct", "prim::device", "prim::dtype", "prim::max", "prim::min",
    "aten::Int", "aten::ScalarImplicit",
    # shapes, views and lookups (all bounds-checked)
    "aten::size", "aten::view", "aten::reshape", "aten::transpose", "aten::permute",
    "aten::unsqueeze", "aten::squeeze", "aten::expand", "aten::expand_as", "aten::contiguous",
    "aten::slice", "aten::select", "aten::index", "aten::gather", "aten::embedding",
    "aten::chunk", "aten::split", "aten::cat", "aten::repeat", "aten::pad",
    # creation and conversion
    "aten::arange", "aten::zeros", "aten::new_ones", "aten::full_like", "aten::tensor",
    "aten::to", "aten::type_as", "aten::detach", "aten::dropout",
    # arithmetic and reductions
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul", "aten::mul_",
    "aten::div", "aten::div_", "aten::floor_divide", "aten::neg", "aten::abs", "aten::sign",
    "aten::pow", "aten::sqrt", "aten::log", "aten::ceil", "aten::clamp", "aten::clamp_min",
    "aten::cumsum", "aten::sum", "aten::mean", "aten::min", "aten::linalg_vector_norm",
    # comparisons and masks
    "aten::eq", "aten::ne", "aten::lt", "aten::le", "aten::gt", "aten::ge",
    "aten::__and__", "aten::bitwise_not", "aten::where", "aten::masked_fill", "aten::masked_fill_",
    # layers
    "aten::linear", "aten::matmul", "aten::bmm", "aten::layer_norm", "aten::softmax",
    "aten::scaled_dot_product_attention", "aten::gelu", "aten::relu", "aten::tanh",
    # dynamic quantization (eland --quantize, qint8 or float16)
    "quantized::linear_dynamic", "quantized::linear_dynamic_fp16",
})

_CHUNK_BYTES = 1 << 20
# What zipfile raises for damaged archives (RuntimeError: encrypted records).
_UNREADABLE = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


class UnsafeModelError(Exception):
    """A model definition refused before any worker runs it; the message names the reason."""


def scan_archive(path: Path) -> None:
    """Refuse a file that is not a TorchScript archive or that would run code while loading.

    Every record is read, not only `code/**/*.py`: the loader finds code files by
    a case-insensitive name lookup, so any record could be the one it compiles.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            _require_module_code([record.filename for record in records])
            for record in records:
                if hooks := _hooks_in(archive, record):
                    raise UnsafeModelError(
                        f"model definition contains load-time {_named('hook', hooks)} in [{record.filename}]"
                    )
    except _UNREADABLE as error:
        reason = f"model definition is not a readable TorchScript archive: {error}"
        raise UnsafeModelError(reason) from error


def check_graph(module: torch.jit.ScriptModule, max_nodes: int) -> None:
    """Refuse a loaded module whose forward can reach a forbidden or unknown operation.

    Follows if-branches and the submodule methods forward calls, counting every
    node reached; a graph above `max_nodes` is refused as soon as the count passes it.
    """
    kinds = _reachable_kinds(module, max_nodes)
    if forbidden := sorted(kinds & FORBIDDEN_OPERATIONS):
        raise UnsafeModelError(f"model definition uses forbidden {_named('operation', forbidden)}")
    if unsupported := sorted(kinds - ALLOWED_OPERATIONS):
        raise UnsafeModelError(
            f"model definition uses unsupported {_named('operation', unsupported)}; "
            "only operations of eland-traced transformer models are allowed"
        )


def load_checked(
    path: Path, max_nodes: int = DEFAULT_MAX_NODES, trusted: bool = False
) -> torch.jit.ScriptModule:
    """Load a definition for CPU inference.

    `trusted` skips both checks, for a model the operator vouches for.
    """
    import torch

    if not trusted:
        scan_archive(path)
    module = torch.jit.load(path, map_location="cpu").eval()
    if not trusted:
        check_graph(module, max_nodes)
    return module


def _require_module_code(names: list[str]) -> None:
    """A TorchScript archive has a `data.pkl` and serialized code; a `torch.save` state dict has no code."""
    has_data = any(name.endswith("/data.pkl") for name in names)
    has_code = any("/code/" in name and name.endswith(".py") for name in names)
    if not (has_data and has_code):
        raise UnsafeModelError(
            "model definition is not a TorchScript archive: it holds no serialized module code"
        )


def _hooks_in(archive: zipfile.ZipFile, record: zipfile.ZipInfo) -> list[str]:
    """The hooks named in one record, streamed: a record can hold gigabytes of weights.

    Consecutive chunks overlap so a name split across them is still found.
    """
    needles = {hook: hook.encode() for hook in LOAD_TIME_HOOKS}
    overlap = max(map(len, needles.values())) - 1
    found: set[str] = set()
    tail = b""
    with archive.open(record) as stream:
        while chunk := stream.read(_CHUNK_BYTES):
            window = tail + chunk
            found.update(hook for hook, needle in needles.items() if needle in window)
            tail = window[-overlap:]
    return sorted(found)


def _named(noun: str, names: list[str]) -> str:
    """`operation [a]` or `operations [a, b]`, as the refusal messages name them."""
    return f"{noun}{'s' if len(names) > 1 else ''} [{', '.join(names)}]"


def _reachable_kinds(module: torch.jit.ScriptModule, max_nodes: int) -> set[str]:
    """Node kinds forward can execute, following blocks and resolvable method calls.

    Iterative, so a deeply nested hostile module cannot exhaust Python's stack;
    the node budget bounds the work however often a method is called.
    """
    kinds: set[str] = set()
    count = 0
    pending = [_frame(module.forward.graph, module)]
    while pending:
        block, objects = pending.pop()
        for node in block.nodes():
            count += 1
            if count > max_nodes:
                raise UnsafeModelError(f"model definition graph has more than [{max_nodes}] nodes")
            kind = node.kind()
            if kind == "prim::GetAttr":
                _bind(node, objects)
            called = _called(node, objects) if kind == "prim::CallMethod" else None
            if called is None:
                kinds.add(kind)
            else:
                pending.append(called)
            pending.extend((inner, objects) for inner in node.blocks())
    return kinds


def _frame(graph: Any, owner: Any) -> tuple[Any, dict[int, Any]]:
    """A graph to walk, with its `self` input bound to `owner`."""
    return graph, {next(graph.inputs()).unique(): owner}


def _bind(node: Any, objects: dict[int, Any]) -> None:
    """Remember what a `self.<name>` lookup yields, so calls on it can be followed."""
    owner = objects.get(node.input().unique())
    if owner is not None:
        objects[node.output().unique()] = getattr(owner, node.s("name"), None)


def _called(node: Any, objects: dict[int, Any]) -> tuple[Any, dict[int, Any]] | None:
    """The method graph a call on a known object runs; None leaves the call opaque."""
    target = objects.get(node.inputsAt(0).unique())
    graph = getattr(getattr(target, node.s("name"), None), "graph", None)
    return None if graph is None else _frame(graph, target)
