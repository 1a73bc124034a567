"""The half of the eland tests that runs inside eland's own virtualenv (transformers 4, eland 9.2).

Run as `python eland_side.py build|import|expect` with a JSON request on stdin; its JSON answer is the last line it
prints (the libraries may print before it).
It imports nothing from the project: the project's environment cannot load eland, and this one lacks the project.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
import transformers

PREFIXES = {"bert": "Bert", "roberta": "Roberta"}
EXTRA_POSITIONS = {"bert": 0, "roberta": 2}  # RoBERTa's positions start past the pad id


def build(request: dict[str, Any]) -> list[str]:
    """Saves each requested tiny model with `save_pretrained`, in the folder `request["out"]/<name>`."""
    out = Path(request["out"])
    for seed, spec in enumerate(request["models"]):
        directory = out / spec["name"]
        family = spec["family"]
        tokenizer = _tokenizer(family, request["vocabularies"][family], request["max_length"], out / f".{family}")
        torch.manual_seed(seed)
        model = _model(family, spec["head"], spec["labels"], tokenizer, request)
        if spec["sentence_transformers"]:
            _save_sentence_transformer(model, tokenizer, directory, request["hidden_size"])
        else:
            model.save_pretrained(directory)
            tokenizer.save_pretrained(directory)
    return sorted(path.name for path in out.iterdir() if not path.name.startswith("."))


def _tokenizer(family: str, upload: dict[str, list[str]], max_length: int, files: Path) -> Any:
    """The slow tokenizer eland loads (`use_fast=False`), made from the vocabulary files it reads."""
    files.mkdir(parents=True, exist_ok=True)
    if family == "bert":
        (files / "vocab.txt").write_text("\n".join(upload["vocabulary"]) + "\n", encoding="utf-8")
        return transformers.BertTokenizer(str(files / "vocab.txt"), do_lower_case=True, model_max_length=max_length)
    vocab = {token: i for i, token in enumerate(upload["vocabulary"])}
    (files / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (files / "merges.txt").write_text("#version: 0.2\n" + "\n".join(upload["merges"]) + "\n", encoding="utf-8")
    return transformers.RobertaTokenizer(
        str(files / "vocab.json"), str(files / "merges.txt"), model_max_length=max_length
    )


def _model(family: str, head: str, labels: list[str], tokenizer: Any, request: dict[str, Any]) -> Any:
    """2 layers, 2 heads, random weights spread wide enough that labels are far apart."""
    prefix = PREFIXES[family]
    label_maps = {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}
    config = getattr(transformers, f"{prefix}Config")(
        vocab_size=len(tokenizer),
        hidden_size=request["hidden_size"],
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * request["hidden_size"],
        max_position_embeddings=request["max_length"] + EXTRA_POSITIONS[family],
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.2,
        **(label_maps if labels else {}),
    )
    return getattr(transformers, f"{prefix}{head}")(config).eval()


def _save_sentence_transformer(model: Any, tokenizer: Any, directory: Path, hidden_size: int) -> None:
    """sentence-transformers' own layout (`modules.json`, `1_Pooling/`), with the tokenizer files it loads."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer

    encoder = directory.parent / f".{directory.name}-encoder"
    model.save_pretrained(encoder)
    tokenizer.save_pretrained(encoder)
    modules = [Transformer(str(encoder)), Pooling(hidden_size, pooling_mode="mean"), Normalize()]
    SentenceTransformer(modules=modules, device="cpu").save(str(directory))


def run_imports(request: dict[str, Any]) -> dict[str, Any]:
    """eland's CLI entry point once per model, in this one process; then eland's own model listing.

    Each import's failure (an exit or an exception) is reported, not raised, so the others still run.
    """
    from eland.cli.eland_import_hub_model import main
    from eland.ml.pytorch import PyTorchModel
    from elasticsearch import Elasticsearch

    failures: dict[str, str] = {}
    for name, args in request["imports"].items():
        sys.argv = ["eland_import_hub_model", *args]
        try:
            main()
        except SystemExit as exit_:
            if exit_.code not in (None, 0):
                failures[name] = f"exit {exit_.code}"
        except Exception:
            failures[name] = traceback.format_exc()
    listed = sorted(PyTorchModel.list(Elasticsearch(request["url"])))
    return {"failures": failures, "listed": listed}


def expect(request: dict[str, Any]) -> dict[str, Any]:
    """Each job run by the Hugging Face model in eager mode, answered with raw outputs."""
    return {name: JOBS[job["kind"]](job) for name, job in request.items()}


def _tokens_and_logits(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The Hugging Face tokenizer's ids, words and offsets, and the head's logits, per text."""
    directory = job["dir"]
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = getattr(transformers, f"AutoModel{job['head']}").from_pretrained(directory).eval()
    runs = []
    for text in job["texts"]:
        encoding = tokenizer(text, return_offsets_mapping=True, return_tensors="pt")
        with torch.inference_mode():
            logits = model(input_ids=encoding["input_ids"], attention_mask=encoding["attention_mask"]).logits[0]
        runs.append(
            {
                "ids": encoding["input_ids"][0].tolist(),
                "word_ids": encoding.word_ids(),
                "offsets": encoding["offset_mapping"][0].tolist(),
                "logits": logits.tolist(),
                "decoded": [tokenizer.decode([i]) for i in range(len(tokenizer))] if job["decode"] else [],
            }
        )
    return runs


def _row_logits(job: dict[str, Any]) -> list[list[float]]:
    """Logits of given id rows, each run alone at [1, L] with token types all 0, as Elasticsearch feeds them."""
    model = transformers.AutoModelForSequenceClassification.from_pretrained(job["dir"]).eval()
    logits = []
    for ids in job["rows"]:
        input_ids = torch.tensor([ids])
        with torch.inference_mode():
            output = model(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                token_type_ids=torch.zeros_like(input_ids),
            )
        logits.append(output.logits[0].tolist())
    return logits


def _embeddings(job: dict[str, Any]) -> list[list[float]]:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(job["dir"], device="cpu").encode(job["texts"]).tolist()


JOBS = {"tokens_and_logits": _tokens_and_logits, "row_logits": _row_logits, "embeddings": _embeddings}
COMMANDS = {"build": build, "import": run_imports, "expect": expect}

if __name__ == "__main__":
    print(json.dumps(COMMANDS[sys.argv[1]](json.load(sys.stdin))))
