"""Trace a local Hugging Face model to TorchScript the way eland does, with the config eland would send.

The graph takes the positional int64 inputs Elasticsearch feeds (BERT family: input_ids,
attention_mask, token_type_ids, position_ids), runs at any batch size and any length up to the
maximum, and returns what Elasticsearch reads for the task. Two tables make it extensible: FAMILIES
(tokenizer → graph inputs, tokenization options, vocabulary) and TASKS (task → module and config).
"""

from __future__ import annotations

import inspect
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from sidecar.errors import illegal_argument
from sidecar.importer.model_id import default_model_id

DEFINITION_FILE = "traced_pytorch_model.pt"
REASONABLE_MAX_LENGTH = 8192  # eland ignores larger tokenizer limits: they are placeholders
SAMPLE_TEXTS = (
    "John Smith works for the Acme company in New York City and lives in Paris.",
    "A short one.",
)


@dataclass
class TracedModel:
    model_id: str
    definition: Path
    config: dict[str, Any]
    vocabulary: dict[str, list[Any]]


@dataclass(frozen=True)
class Family:
    """How one tokenizer family is fed to the graph and described to Elasticsearch."""

    name: str  # the key under `tokenization`
    inputs: tuple[str, ...]  # graph inputs, in the order Elasticsearch passes them
    tokenization_options: Callable[[PreTrainedTokenizerBase], dict[str, Any]]
    vocabulary: Callable[[PreTrainedTokenizerBase], dict[str, list[Any]]]
    fallback_length: int | None  # max_sequence_length when the tokenizer states none


Loaded = tuple[nn.Module, set[str]]  # the module, and the weights its checkpoint lacks


@dataclass(frozen=True)
class Task:
    """How one task type is loaded, traced and described to Elasticsearch."""

    load: Callable[[Path, tuple[str, ...]], Loaded]  # model dir, graph inputs → positional module
    padding: str  # of the example batch, as eland pads it for this task
    inference_options: Callable[[PretrainedConfig, Any], dict[str, Any]]  # HF config, sample output
    declared_length: Callable[[Path], int | None] = lambda model_dir: None  # the input limit the model dir states


def trace_model(
    model_dir: Path,
    task_type: str,
    out_dir: Path,
    *,
    name: str | None = None,
    model_id: str | None = None,
    quantize: bool = False,
    max_model_input_length: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> TracedModel:
    """Write `out_dir/traced_pytorch_model.pt` and return it with eland's config and vocabulary.

    `name` is what the user called the model (a hub id, by default the directory): as in eland, it
    names the model in the description and gives the default model id.
    """
    task = _task(task_type)
    name = name or str(model_dir)
    step = Steps(5 + int(quantize), enabled=progress)
    step(f"loading [{name}] for task [{task_type}]")
    hf_config, tokenizer, family, module, max_length = _load(model_dir, name, task, max_model_input_length, force, step)
    if quantize:
        step("quantizing")
        with _quiet():
            torch.ao.quantization.quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=True)
    example = _encode(tokenizer, family, SAMPLE_TEXTS, task.padding, max_length)
    graph = _trace(module, example, step)
    step("saving")
    definition = _save(graph, out_dir)
    with torch.no_grad():
        sample = graph(*example)
    inference = {
        "tokenization": {family.name: _tokenization(family, tokenizer, max_length)},
        **task.inference_options(hf_config, sample),
    }
    step("measuring memory")
    metadata = {
        "per_deployment_memory_bytes": _deployment_bytes(module),
        "per_allocation_memory_bytes": _allocation_bytes(graph, family, len(tokenizer), max_length),
    }
    config = _config(f"Model {name} for task type '{task_type}'", {task_type: inference}, metadata)
    return TracedModel(model_id or default_model_id(name), definition, config, family.vocabulary(tokenizer))


def _load(
    model_dir: Path, name: str, task: Task, max_model_input_length: int | None, force: bool, step: Steps
) -> tuple[PretrainedConfig, PreTrainedTokenizerBase, Family, nn.Module, int]:
    """Config, tokenizer and model, cheapest first, each failure in one line; a random head is refused."""
    with _quiet(), _loading(name):
        hf_config = AutoConfig.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        family = _family(tokenizer)
        declared = max_model_input_length or task.declared_length(model_dir)
        max_length = _max_sequence_length(tokenizer, family, declared)
        module, missing = task.load(model_dir, family.inputs)
    if missing and not force:
        raise illegal_argument(
            f"[{name}] has no trained weights for {sorted(missing)}: transformers would initialise them randomly "
            "(newly initialized), so its answers would mean nothing; use --force to import it anyway"
        )
    if missing:
        step.note(f"initialising {sorted(missing)} randomly, as forced")
    return hf_config, tokenizer, family, module.eval(), max_length


class Steps:
    """Numbered step lines on stderr: tracing a large model takes minutes and must not look hung."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        self.total = total
        self.done = 0
        self.enabled = enabled

    def __call__(self, message: str) -> None:
        self.done += 1
        self.note(f"[{self.done}/{self.total}] {message}")

    def note(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stderr, flush=True)


def _tokenization(family: Family, tokenizer: PreTrainedTokenizerBase, max_length: int) -> dict[str, Any]:
    """eland sends the common options first, the family's own after, and leaves unset ones out."""
    options = {"max_sequence_length": max_length, **family.tokenization_options(tokenizer)}
    return {key: value for key, value in options.items() if value is not None}


def _config(description: str, inference_config: dict[str, Any], metadata: dict[str, int]) -> dict[str, Any]:
    """The PUT body, keys in the order the client sends eland's."""
    return {
        "description": description,
        "inference_config": inference_config,
        "input": {"field_names": ["text_field"]},
        "metadata": metadata,
        "model_type": "pytorch",
    }


def _encode(
    tokenizer: PreTrainedTokenizerBase, family: Family, texts: tuple[str, ...], padding: str, max_length: int
) -> tuple[Tensor, ...]:
    """The family's positional inputs for `texts`, right-padded as Elasticsearch pads them."""
    batch = tokenizer(list(texts), padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
    return _positional_inputs(family, batch["input_ids"], batch["attention_mask"])


def _positional_inputs(family: Family, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, ...]:
    """Token types all 0 and positions 0..L-1 for every row, exactly what Elasticsearch sends."""
    derived = {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "token_type_ids": torch.zeros_like(input_ids),
        "position_ids": torch.arange(input_ids.shape[1]).expand_as(input_ids),
    }
    return tuple(derived[name] for name in family.inputs)


class Positional(nn.Module):
    """Calls a keyword-driven HF model with positional inputs, dropping those it does not take."""

    def __init__(self, model: nn.Module, inputs: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        accepted = inspect.signature(model.forward).parameters
        self.names = tuple(name if name in accepted else None for name in inputs)

    def forward(self, *inputs: Tensor) -> Any:
        return self.model(**{name: x for name, x in zip(self.names, inputs) if name is not None})


class SentenceEmbedding(nn.Module):
    """A transformer followed by sentence-transformers' pooling and optional Normalize, in one graph."""

    def __init__(self, encoder: nn.Module, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.pool = POOLINGS[pooling]
        self.normalize = normalize

    def forward(self, *inputs: Tensor) -> Tensor:
        tokens = self.encoder(*inputs)[0]
        mask = inputs[1].unsqueeze(-1).to(tokens.dtype)  # every family passes attention_mask second
        pooled = self.pool(tokens, mask)
        return F.normalize(pooled, p=2.0, dim=1) if self.normalize else pooled


def _mean_pool(tokens: Tensor, mask: Tensor) -> Tensor:
    return (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _cls_pool(tokens: Tensor, mask: Tensor) -> Tensor:
    return tokens[:, 0]


def _max_pool(tokens: Tensor, mask: Tensor) -> Tensor:
    return tokens.masked_fill(mask == 0, float("-inf")).max(dim=1).values


POOLINGS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mean": _mean_pool, "cls": _cls_pool, "max": _max_pool}

# Legacy sentence-transformers flags, the unsupported ones included so that the error can name them.
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SENTENCE_MODULES = {"Transformer", "Pooling", "Normalize"}
_SENTENCE_CONFIG_FILES = tuple(
    f"sentence_{kind}_config.json"
    for kind in ("bert", "roberta", "distilbert", "camembert", "albert", "xlm-roberta", "xlnet")
)


def _pretrained(auto_class: type, path: Path) -> Loaded:
    """The model, and the weights its checkpoint lacks: those transformers initialises randomly."""
    model, info = auto_class.from_pretrained(path, return_dict=False, output_loading_info=True)
    return model, set(info["missing_keys"])


def _load_head(auto_class: type) -> Callable[[Path, tuple[str, ...]], Loaded]:
    def load(model_dir: Path, inputs: tuple[str, ...]) -> Loaded:
        model, missing = _pretrained(auto_class, model_dir)
        return Positional(model, inputs), missing

    return load


def _sentence_modules(model_dir: Path) -> dict[str, Path]:
    """sentence-transformers module kind → its folder, from `modules.json`; none for a plain HF dir."""
    modules_file = model_dir / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.exists() else []
    return {module["type"].rsplit(".", 1)[-1]: model_dir / module["path"] for module in modules}


def _load_sentence_embedding(model_dir: Path, inputs: tuple[str, ...]) -> Loaded:
    """The sentence-transformers stack read from `modules.json`; a plain HF dir gets mean pooling as there."""
    kinds = _sentence_modules(model_dir)
    if unknown := sorted(set(kinds) - _SENTENCE_MODULES):
        raise illegal_argument(f"sentence-transformers modules {unknown} are not supported")
    if kinds and "Pooling" not in kinds:
        raise illegal_argument("a text_embedding model needs a sentence-transformers Pooling module")
    pooling = _pooling_mode(json.loads((kinds["Pooling"] / "config.json").read_text())) if kinds else "mean"
    encoder, missing = _pretrained(AutoModel, kinds.get("Transformer", model_dir))
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # sentence pooling replaces it; dropping it keeps its weights out of the graph
    missing = {key for key in missing if not key.startswith("pooler.")}
    return SentenceEmbedding(Positional(encoder, inputs), pooling, "Normalize" in kinds), missing


def _sentence_length(model_dir: Path) -> int | None:
    """The Transformer module's `max_seq_length`: sentence-transformers truncates there, not at the tokenizer's
    limit (all-MiniLM-L6-v2: 256, where its BERT tokenizer allows 512). Older releases used other file names."""
    folder = _sentence_modules(model_dir).get("Transformer", model_dir)
    for file_name in _SENTENCE_CONFIG_FILES:
        if (folder / file_name).is_file():
            length = json.loads((folder / file_name).read_text()).get("max_seq_length")
            return int(length) if length else None
    return None


def _pooling_mode(config: dict[str, Any]) -> str:
    modes = config.get("pooling_mode") or [mode for flag, mode in _POOLING_FLAGS.items() if config.get(flag)]
    modes = [modes] if isinstance(modes, str) else list(modes)
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise illegal_argument(f"pooling {modes} is not supported; use exactly one of {sorted(POOLINGS)}")
    return modes[0]


def _labels(config: PretrainedConfig, sample: Any) -> dict[str, Any]:
    """Labels by id; `B-PER` becomes `B_PER` because Elasticsearch parses them as Java enum names."""
    labels = [label for _, label in sorted(config.id2label.items())]
    return {"classification_labels": [label.replace("-", "_") for label in labels]}


def _embedding_size(config: PretrainedConfig, sample: Any) -> dict[str, Any]:
    return {"embedding_size": sample.shape[-1]}


TASKS: dict[str, Task] = {
    "ner": Task(_load_head(AutoModelForTokenClassification), "max_length", _labels),
    "text_classification": Task(_load_head(AutoModelForSequenceClassification), "max_length", _labels),
    "text_embedding": Task(_load_sentence_embedding, "longest", _embedding_size, _sentence_length),
}


def _ordered_vocabulary(tokenizer: PreTrainedTokenizerBase) -> dict[str, list[Any]]:
    return {"vocabulary": [token for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]}


def _bert_options(tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    return {"do_lower_case": getattr(tokenizer, "do_lower_case", None)}


BERT = Family(
    name="bert",
    inputs=("input_ids", "attention_mask", "token_type_ids", "position_ids"),
    tokenization_options=_bert_options,
    vocabulary=_ordered_vocabulary,
    fallback_length=512,
)

# Matched against the tokenizer's class and its bases: DistilBERT, Electra, MobileBERT, SqueezeBERT
# and DPR tokenizers are BertTokenizer subclasses or aliases.
FAMILIES: dict[str, Family] = {"BertTokenizer": BERT}


def _task(task_type: str) -> Task:
    if task_type not in TASKS:
        raise illegal_argument(f"task type [{task_type}] is not supported; use one of {sorted(TASKS)}")
    return TASKS[task_type]


def _family(tokenizer: PreTrainedTokenizerBase) -> Family:
    for cls in type(tokenizer).__mro__:
        if cls.__name__ in FAMILIES:
            return FAMILIES[cls.__name__]
    raise illegal_argument(f"tokenizer [{type(tokenizer).__name__}] is not supported; use one of {sorted(FAMILIES)}")


def _max_sequence_length(tokenizer: PreTrainedTokenizerBase, family: Family, declared: int | None) -> int:
    """eland's order: the explicit or the model's declared value, the tokenizer's own limit, the family's usual one."""
    if declared:
        return declared
    length = getattr(tokenizer, "model_max_length", None)
    if length is not None and length <= REASONABLE_MAX_LENGTH:
        return int(length)
    if family.fallback_length is not None:
        return family.fallback_length
    raise illegal_argument("cannot determine the model's maximum input length; set max_model_input_length")


def _trace(module: nn.Module, example: tuple[Tensor, ...], step: Steps) -> torch.jit.ScriptModule:
    """Trace, then freeze the weights into the graph as constants.

    The example is a batch of two rows, one padded, so that no shortcut a model might take for a
    single unpadded row can be baked into the graph.
    """
    with _quiet(), torch.no_grad():
        step("tracing")
        traced = torch.jit.trace(module, example)
        step("freezing")
        return torch.jit.freeze(traced)


def _save(graph: torch.jit.ScriptModule, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    definition = out_dir / DEFINITION_FILE
    with _quiet():
        torch.jit.save(graph, str(definition))
    return definition


@contextmanager
def _loading(name: str) -> Iterator[None]:
    """What transformers raises for a directory that holds no usable model, as one line rather than a traceback."""
    try:
        yield
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise illegal_argument(f"cannot load a model from [{name}]: {detail}") from None


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide the warnings torch and transformers give for every traced model: they are noise here.

    transformers' load report goes too: the refusal of a randomly initialised head says what matters in one line.
    """
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            for category in (torch.jit.TracerWarning, DeprecationWarning, FutureWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        transformers.logging.set_verbosity(verbosity)


def _deployment_bytes(module: nn.Module) -> int:
    """Parameter and buffer bytes: the memory one loaded copy of the model holds."""
    return sum(t.nelement() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def _allocation_bytes(graph: torch.jit.ScriptModule, family: Family, vocab_size: int, max_length: int) -> int:
    """CPU bytes the profiler sees allocated during one forward of batch 1 at full length.

    eland measures the same way (random vocabulary text at max_sequence_length); random ids
    from a fixed seed stand in for the text so the figure is reproducible.
    """
    ids = torch.randint(vocab_size, (1, max_length), generator=torch.Generator().manual_seed(0))
    inputs = _positional_inputs(family, ids, torch.ones_like(ids))
    cpu = [torch.profiler.ProfilerActivity.CPU]
    with torch.no_grad(), torch.profiler.profile(activities=cpu, profile_memory=True) as prof:
        graph(*inputs)
    return int(prof.key_averages().total_average().cpu_memory_usage)
