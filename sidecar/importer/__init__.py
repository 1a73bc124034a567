"""`sidecar import`: trace a local Hugging Face model like eland does and upload it to a node.

Tracing pulls in torch and transformers, so they are imported only when an import runs:
the `sidecar` command line stays quick for everything else.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:9700"
TASK_TYPES = ("ner", "text_classification", "text_embedding")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_dir", metavar="hf-model-dir", help="a local Hugging Face model directory")
    parser.add_argument("--task-type", required=True, choices=TASK_TYPES)
    parser.add_argument("--model-id", help="default: derived from the directory path as eland does")
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the node to upload to (default: {DEFAULT_URL})")
    parser.add_argument("--start", action="store_true", help="start a deployment once uploaded")
    parser.add_argument("--clear-previous", action="store_true", help="stop and delete a model with the same id")
    parser.add_argument("--quantize", action="store_true", help="dynamic int8 quantization of the linear layers")
    parser.add_argument("--max-model-input-length", type=int, help="tokens; default: the tokenizer's limit")


def run_import(args: argparse.Namespace) -> int:
    """Trace into a temporary directory, upload, and report failures in one line."""
    from sidecar.errors import EsError
    from sidecar.importer.model_id import default_model_id
    from sidecar.importer.trace import trace_model
    from sidecar.importer.upload import UploadError, upload

    try:
        with tempfile.TemporaryDirectory() as out_dir:
            traced = trace_model(
                Path(args.model_dir),
                args.task_type,
                Path(out_dir),
                model_id=args.model_id or default_model_id(args.model_dir),
                quantize=args.quantize,
                max_model_input_length=args.max_model_input_length,
            )
            upload(args.url, traced, clear_previous=args.clear_previous, start=args.start)
    except (EsError, UploadError) as error:
        print(f"sidecar import: {error}", file=sys.stderr)
        return 1
    print(f"uploaded [{traced.model_id}]" + (" and started it" if args.start else ""))
    return 0
