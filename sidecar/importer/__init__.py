"""`sidecar import`: trace a Hugging Face model (a local directory or a hub id) like eland does, upload it to a node.

Tracing pulls in torch and transformers, so they are imported only when an import runs:
the `sidecar` command line stays quick for everything else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from sidecar.credentials import add_es_credentials, es_auth

DEFAULT_URL = "http://127.0.0.1:9700"
TASK_TYPES = ("ner", "text_classification", "text_embedding")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()  # not required here: SIDECAR_HUB_MODEL_ID must count too
    source.add_argument("model_dir", nargs="?", metavar="hf-model-dir", help="a local Hugging Face model directory")
    source.add_argument(
        "--hub-model-id",
        help="a model on the Hugging Face hub, e.g. dslim/bert-base-NER, kept in the hub's local cache "
        "(HF_HOME; HF_HUB_OFFLINE=1 imports from that cache alone)",
    )
    parser.add_argument(
        "--hub-access-token",
        default=os.environ.get("HUB_ACCESS_TOKEN"),
        help="for private and gated hub models (default: $HUB_ACCESS_TOKEN as in eland, else the hub's HF_TOKEN)",
    )
    parser.add_argument("--task-type", required=True, choices=TASK_TYPES)
    parser.add_argument(
        "--es-model-id", "--model-id", dest="model_id", help="default: derived from the hub id or path as eland does"
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the node to upload to (default: {DEFAULT_URL})")
    add_es_credentials(parser, "with a secured cluster, the uploader's")
    parser.add_argument("--start", action="store_true", help="start a deployment once uploaded")
    parser.add_argument("--clear-previous", action="store_true", help="stop and delete a model with the same id")
    parser.add_argument("--quantize", action="store_true", help="dynamic int8 quantization of the linear layers")
    parser.add_argument(
        "--max-model-input-length",
        type=int,
        help="tokens; default: sentence-transformers' max_seq_length, else the tokenizer's limit",
    )
    parser.add_argument(
        "--force", action="store_true", help="import even when the task's head would be initialised randomly"
    )


def run_import(args: argparse.Namespace) -> int:
    """Check the node and the model, trace into a temporary directory, upload; report failures in one line."""
    from sidecar.errors import EsError
    from sidecar.importer.model_id import default_model_id
    from sidecar.importer.source import SourceError, hub_model, local_model
    from sidecar.importer.upload import UploadError, check_node, upload

    name = args.model_dir or args.hub_model_id  # a directory on the command line wins over the environment
    if name is None:
        print("sidecar import: give a model directory or --hub-model-id", file=sys.stderr)
        return 2
    model_id = args.model_id or default_model_id(name)
    try:
        check_node(args.url, model_id, clear_previous=args.clear_previous, auth=es_auth(args))
        model_dir = local_model(name) if args.model_dir else hub_model(name, args.hub_access_token)
        from sidecar.importer.trace import trace_model  # only once the checks have passed: it loads torch

        with tempfile.TemporaryDirectory() as out_dir:
            traced = trace_model(
                model_dir,
                args.task_type,
                Path(out_dir),
                name=name,
                model_id=model_id,
                quantize=args.quantize,
                max_model_input_length=args.max_model_input_length,
                force=args.force,
                progress=True,
            )
            upload(args.url, traced, clear_previous=args.clear_previous, start=args.start, auth=es_auth(args))
    except (EsError, SourceError, UploadError) as error:
        print(f"sidecar import: {error}", file=sys.stderr)
        return 1
    print(f"uploaded [{traced.model_id}]" + (" and started it" if args.start else ""))
    return 0
