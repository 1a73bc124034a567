"""Refuse TorchScript model definitions that could act beyond inference.

A TorchScript archive can run code while it is loaded (a class's `__setstate__`)
and its graphs can read or write files and raw memory. Elasticsearch's native
process validates uploaded models before using them (ml-cpp 9.4+); this module
does the same for the workers: one strict parse of the archive before loading
(`archive`), then a walk of every graph the loaded module can run against a
deny-list and an allow-list.

torch is imported inside functions only, so the API process can import this
module for `UnsafeModelError` without loading torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from sidecar.models.archive import ArchiveError, contents, read_records

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
    # uninitialised memory: what earlier requests left in freed buffers (other callers' texts and vectors)
    "aten::empty",
    "aten::empty_like",
    "aten::empty_strided",
    "aten::new_empty",
    "aten::new_empty_strided",
    "aten::resize_",
    # calls whose target cannot be followed (a method of a module in the model is walked on its own instead)
    "prim::CallFunction",
    "prim::CallMethod",
})

# Every operation seen in eland-style traces, float and dynamic-quantized:
# ml-cpp's reference traces of full-size BERT, RoBERTa, XLM-R, MPNet, DeBERTa,
# DistilBERT, ELECTRA, MobileBERT, DPR, ELSER and E5 models (PyTorch 2.7.1), plus
# tiny BERT, RoBERTa, XLM-R, MPNet, DeBERTa-v2, DistilBERT and ELECTRA models with
# every eland task head and all-MiniLM-L6-v2 with pooling, traced here with
# PyTorch 2.13 and transformers 5, frozen or not; and plain tensor creation and
# arithmetic any small model may use (Elasticsearch's own test model returns
# `torch.ones`). Anything else is unsupported.
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
    "aten::chunk", "aten::split", "aten::cat", "aten::stack", "aten::repeat", "aten::pad",
    "aten::flatten", "aten::tril", "aten::triu",
    # creation (initialised) and conversion
    "aten::arange", "aten::zeros", "aten::zeros_like", "aten::ones", "aten::ones_like",
    "aten::full", "aten::full_like", "aten::new_zeros", "aten::new_ones", "aten::new_full", "aten::tensor",
    "aten::to", "aten::type_as", "aten::detach", "aten::clone", "aten::dropout",
    # arithmetic and reductions
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul", "aten::mul_",
    "aten::div", "aten::div_", "aten::floor_divide", "aten::remainder", "aten::neg", "aten::abs", "aten::sign",
    "aten::pow", "aten::sqrt", "aten::rsqrt", "aten::reciprocal", "aten::log", "aten::ceil", "aten::floor",
    "aten::round", "aten::clamp", "aten::clamp_min", "aten::maximum", "aten::minimum",
    "aten::cumsum", "aten::sum", "aten::mean", "aten::min", "aten::max", "aten::amax", "aten::argmax",
    "aten::linalg_vector_norm",
    # comparisons and masks
    "aten::eq", "aten::ne", "aten::lt", "aten::le", "aten::gt", "aten::ge", "aten::all", "aten::any",
    "aten::__and__", "aten::__or__", "aten::bitwise_not", "aten::logical_not",
    "aten::where", "aten::masked_fill", "aten::masked_fill_",
    # layers
    "aten::linear", "aten::matmul", "aten::mm", "aten::addmm", "aten::bmm", "aten::layer_norm",
    "aten::softmax", "aten::log_softmax", "aten::scaled_dot_product_attention", "aten::gelu", "aten::relu",
    "aten::tanh",
    # dynamic quantization (eland --quantize, qint8 or float16)
    "quantized::linear_dynamic", "quantized::linear_dynamic_fp16",
})


class UnsafeModelError(Exception):
    """A model definition refused before any worker runs it; the message names the reason."""


def scan_archive(definition: Path | BinaryIO) -> None:
    """Refuse a file that is not exactly one TorchScript archive, or that would run code while loading.

    Every record is read, not only `code/**/*.py`: the loader finds code files by
    a case-insensitive name lookup, so any record could be the one it compiles.
    """
    with _opened(definition) as file:
        try:
            records = read_records(file)
            _require_module_code([record.name for record in records])
            for record in records:
                if hooks := _hooks_in(contents(file, record)):
                    raise UnsafeModelError(
                        f"model definition contains load-time {_named('hook', hooks)} in [{record.name}]"
                    )
        except ArchiveError as error:
            raise UnsafeModelError(f"model definition is not a readable TorchScript archive: {error}") from error


def check_graph(module: torch.jit.ScriptModule, max_nodes: int) -> None:
    """Refuse a loaded module any of whose graphs can reach a forbidden or unknown operation.

    Walks every method and every forward pre-hook and hook of every module in
    the tree, following if-branches and counting every node; a model above
    `max_nodes` is refused as soon as the count passes it.
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
    definition: Path | BinaryIO, max_nodes: int = DEFAULT_MAX_NODES, trusted: bool = False
) -> torch.jit.ScriptModule:
    """Load a definition for CPU inference; `trusted` skips both checks, for a model the operator vouches for.

    torch reads the very file the archive check read: it opens `/proc/self/fd/N`, which is the open file behind
    the descriptor, not the path. Renaming or replacing the definition's path in between changes nothing, and
    nothing writes into a definition file once written (`write_definition` writes a new file and renames it over
    the old), so no other bytes can reach torch than the ones that were checked.
    """
    import torch

    with _opened(definition) as file:
        if not trusted:
            scan_archive(file)
        module = torch.jit.load(f"/proc/self/fd/{file.fileno()}", map_location="cpu").eval()
    if not trusted:
        check_graph(module, max_nodes)
    return module


@contextmanager
def _opened(definition: Path | BinaryIO) -> Iterator[BinaryIO]:
    """An open file stays open (its owner closes it); a path is opened read-only for the call."""
    if not isinstance(definition, Path):
        yield definition
        return
    with open(definition, "rb") as file:
        yield file


def _require_module_code(names: list[str]) -> None:
    """A TorchScript archive has a `data.pkl` and serialized code; a `torch.save` state dict has no code."""
    has_data = any(name.endswith("/data.pkl") for name in names)
    has_code = any("/code/" in name and name.endswith(".py") for name in names)
    if not (has_data and has_code):
        raise UnsafeModelError(
            "model definition is not a TorchScript archive: it holds no serialized module code"
        )


def _hooks_in(chunks: Iterator[bytes]) -> list[str]:
    """The hooks named in one record, streamed: a record can hold gigabytes of weights.

    Consecutive chunks overlap so a name split across them is still found.
    """
    needles = {hook: hook.encode() for hook in LOAD_TIME_HOOKS}
    overlap = max(map(len, needles.values())) - 1
    found: set[str] = set()
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        found.update(hook for hook, needle in needles.items() if needle in window)
        tail = window[-overlap:]
    return sorted(found)


def _named(noun: str, names: list[str]) -> str:
    """`operation [a]` or `operations [a, b]`, as the refusal messages name them."""
    return f"{noun}{'s' if len(names) > 1 else ''} [{', '.join(names)}]"


def _reachable_kinds(module: torch.jit.ScriptModule, max_nodes: int) -> set[str]:
    """Node kinds of every graph the module can run, following blocks and calls.

    What runs without being called from a graph: the module's forward, the
    forward pre-hooks and hooks of every module in the tree, and their
    double-underscore methods (loading and Python protocols call those). From
    there a `prim::CallMethod` is followed (left out of the kinds) when it calls
    a method of a module type in the tree, walking the callee at every call as
    if inlined. Iterative, so a deeply nested hostile graph cannot exhaust
    Python's stack; the node budget bounds the work.
    """
    methods, roots = _module_graphs(module)
    pending = [methods[key].block() for key in roots]
    kinds: set[str] = set()
    count = 0
    while pending:
        for node in pending.pop().nodes():
            count += 1
            if count > max_nodes:
                raise UnsafeModelError(f"model definition graph has more than [{max_nodes}] nodes")
            kind = node.kind()
            called = (_receiver(node), node.s("name")) if kind == "prim::CallMethod" else None
            if called in methods:
                pending.append(methods[called].block())
            else:
                kinds.add(kind)
            pending.extend(node.blocks())
    return kinds


def _module_graphs(module: torch.jit.ScriptModule) -> tuple[dict[tuple[str, str], Any], list[tuple[str, str]]]:
    """Every method and hook graph by (module type, name), and the keys of those that run without being called."""
    methods: dict[tuple[str, str], Any] = {}
    roots: list[tuple[str, str]] = []
    owners: set[str] = set()
    for submodule in module.modules():
        c_module = submodule._c
        owner = c_module._type().qualified_name()
        if owner in owners:
            continue
        owners.add(owner)
        for name in c_module._method_names():
            methods[owner, name] = c_module._get_method(name).graph
            if (name == "forward" and submodule is module) or (name.startswith("__") and name.endswith("__")):
                roots.append((owner, name))
        hooks = [*c_module._get_forward_pre_hooks(), *c_module._get_forward_hooks()]
        for index, hook in enumerate(hooks):
            methods[owner, f"<hook {index}>"] = hook.graph
            roots.append((owner, f"<hook {index}>"))
    return methods, roots


def _receiver(node: Any) -> str | None:
    """The qualified type name of the object a `prim::CallMethod` is called on."""
    receiver_type = node.inputsAt(0).type()
    qualified_name = getattr(receiver_type, "qualified_name", None)
    return qualified_name() if qualified_name else None
