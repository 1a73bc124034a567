"""`sidecar serve`, `sidecar import` and `sidecar pipelines`."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from importlib.metadata import version
from pathlib import Path

from sidecar import cli_options
from sidecar.credentials import add_es_credentials, add_secret_file, read_secret_files
from sidecar.logs import FORMATS, LEVELS
from sidecar.logs import configure as configure_logs
from sidecar.settings import Settings
from sidecar.workers.spec import PRECISIONS


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    read_secret_files(parser, args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "pipelines":
        from sidecar.elastic.pipelines import run_pipelines

        return run_pipelines(args)
    from sidecar.importer import run_import

    return run_import(args)


def build_parser() -> argparse.ArgumentParser:
    parser = cli_options.Parser(prog="sidecar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sidecar {version('sidecar')}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run a node")
    _serve_arguments(serve)
    importer = commands.add_parser("import", help="trace a Hugging Face model, local or from the hub, and upload it")
    from sidecar.importer import add_arguments

    add_arguments(importer)
    pipelines = commands.add_parser("pipelines", help="install the ingest pipelines that reach a deployed model")
    from sidecar.elastic.pipelines import add_arguments as add_pipeline_arguments

    add_pipeline_arguments(pipelines)
    cli_options.finish(parser)
    return parser


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument("--host", default=defaults.host, help="address to bind (default: loopback only)")
    parser.add_argument("--port", type=_port, default=defaults.port, help="HTTP port, 1-65535")
    parser.add_argument(
        "--data-dir", type=Path, default=defaults.data_dir, help="the node's id, lock and model files; one node per dir"
    )
    parser.add_argument("--node-name", default=defaults.node_name, help="the name _stats and GET / show")
    parser.add_argument("--cluster-name", default=defaults.cluster_name, help="the cluster name GET / reports")
    parser.add_argument(
        "--es-version", type=_es_version, default=defaults.es_version,
        help="the Elasticsearch release the node speaks as: GET / reports it, messages and shapes follow it",
    )  # fmt: skip
    parser.add_argument(
        "--store",
        type=_store,
        default=None,
        help="sqlite:<file> (several nodes on one host) or elasticsearch (indices in the --es-url cluster); "
        "default: the SQLite file in the data dir",
    )
    parser.add_argument(
        "--max-docs-per-request", type=int, default=defaults.max_docs_per_request, help="documents in one _infer"
    )
    parser.add_argument("--max-text-chars", type=int, default=defaults.max_text_chars, help="characters in one text")
    parser.add_argument(
        "--max-body-bytes", type=int, default=defaults.max_body_bytes, help="request body (http.max_content_length)"
    )
    parser.add_argument(
        "--max-header-bytes", type=int, default=defaults.max_header_bytes,
        help="request line and headers together (http.max_header_size)",
    )
    parser.add_argument(
        "--max-in-flight-bytes", type=int, default=defaults.max_in_flight_bytes,
        help="request bytes the node holds at once; past it, 429 circuit_breaking_exception (default: 128 MiB)",
    )
    parser.add_argument("--http-read-timeout", default="30s", help="a request that stops arriving is cut off")
    parser.add_argument("--http-idle-timeout", default="60s", help="idle keep-alive connections are closed")
    parser.add_argument(
        "--max-batch-docs", type=int, default=defaults.max_batch_docs, help="documents in one forward pass"
    )
    parser.add_argument(
        "--max-batch-tokens", type=int, default=defaults.max_batch_tokens, help="tokens in one forward pass"
    )
    parser.add_argument("--trust-model", action="append", default=[], metavar="MODEL_ID", help="skip the TorchScript safety check for this model")
    parser.add_argument(
        "--max-graph-nodes", type=int, default=defaults.max_graph_nodes, help="largest model graph the safety check reads"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=defaults.precision,
        help="auto: bf16 where the CPU has it and a probe finds the same answers, faster; fp32 or bf16 to insist",
    )  # fmt: skip
    parser.add_argument(
        "--cpu-flags", type=_flag_list, default=None, metavar="LIST",
        help="the CPU flags workers go by instead of /proc/cpuinfo's, e.g. avx512_bf16 or '' for none (diagnosis)",
    )  # fmt: skip
    parser.add_argument("--advertise-url", default=None, help="URL other nodes use to reach this one (default: from host and port)")
    parser.add_argument("--heartbeat-timeout", default="10s", help="a node silent for longer is not live (default: 10s)")
    parser.add_argument(
        "--cores", type=_core_list, default=None, metavar="LIST",
        help="CPUs this node's workers may use, e.g. 0-3,6 (default: every CPU the process may use); "
        "nodes sharing a host each take their own",
    )
    parser.add_argument("--log-level", type=str.lower, choices=LEVELS, default="info", help="least severe level logged")
    parser.add_argument(
        "--log-format", choices=FORMATS, default="text", help="json: ECS lines for Filebeat and Elastic Agent"
    )
    parser.add_argument("--access-log", action="store_true", help="log one line per HTTP request")
    # the Elasticsearch cluster next to the node: inference endpoints, pipeline references, callers' credentials
    cluster = parser.add_argument_group("Elasticsearch cluster")
    cluster.add_argument("--es-url", default=None, help="the cluster whose ingest pipelines call this node")
    add_es_credentials(cluster, "the node's own")
    cluster.add_argument("--es-ca-certs", type=Path, default=None, help="CA bundle for an https cluster")
    cluster.add_argument("--callback-secret", default=None, help="what the cluster sends on callbacks (default: generated, kept in the data dir)")
    add_secret_file(cluster, "--callback-secret")
    cluster.add_argument("--insecure", action="store_true", help="allow listening beyond loopback without authentication")


def _port(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 1 to 65535, got [{value}]")
    return int(value)


def _core_list(value: str) -> tuple[int, ...]:
    """`0-3,6` -> (0, 1, 2, 3, 6)."""
    try:
        cores: list[int] = []
        for part in value.split(","):
            low, _, high = part.partition("-")
            cores += range(int(low), int(high or low) + 1)
        return tuple(dict.fromkeys(cores))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CPU numbers like 0-3,6, got [{value}]") from None


def _flag_list(value: str) -> frozenset[str]:
    """`amx_bf16,avx512_bf16` -> the set; empty -> none."""
    return frozenset(flag.strip() for flag in value.split(",") if flag.strip())


def _es_version(value: str) -> str:
    if re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z]+)?", value):
        return value
    raise argparse.ArgumentTypeError(f"expected an Elasticsearch release like 9.2.0, got [{value}]")


def _store(value: str) -> str:
    if value == "elasticsearch" or (value.startswith("sqlite:") and len(value) > len("sqlite:")):
        return value
    raise argparse.ArgumentTypeError("expected sqlite:<file> or elasticsearch")


def settings_from(args: argparse.Namespace) -> Settings:
    from sidecar.timevalue import parse_time

    return Settings(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        node_name=args.node_name,
        cluster_name=args.cluster_name,
        es_version=args.es_version,
        store=args.store,
        max_docs_per_request=args.max_docs_per_request,
        max_text_chars=args.max_text_chars,
        max_body_bytes=args.max_body_bytes,
        max_header_bytes=args.max_header_bytes,
        max_in_flight_bytes=args.max_in_flight_bytes,
        http_read_timeout_s=parse_time(args.http_read_timeout, "http-read-timeout").seconds,
        http_idle_timeout_s=parse_time(args.http_idle_timeout, "http-idle-timeout").seconds,
        max_batch_docs=args.max_batch_docs,
        max_batch_tokens=args.max_batch_tokens,
        trusted_models=frozenset(args.trust_model),
        max_graph_nodes=args.max_graph_nodes,
        precision=args.precision,
        cpu_flags=args.cpu_flags,
        advertise_url=args.advertise_url,
        cores=args.cores,
        heartbeat_timeout_s=parse_time(args.heartbeat_timeout, "heartbeat-timeout").seconds,
        es_url=args.es_url,
        es_api_key=args.es_api_key,
        es_user=args.es_user,
        es_password=args.es_password,
        es_ca_certs=args.es_ca_certs,
        callback_secret=args.callback_secret,
        insecure=args.insecure,
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sidecar.api.app import create_app
    from sidecar.api.protocol import HttpLimits, protocol_factory
    from sidecar.cluster.lock import NodeLocked, lock_data_dir
    from sidecar.elastic.exposure import exposure_problem
    from sidecar.metrics import NodeMetrics
    from sidecar.workers.cores import usable_cores

    configure_logs(args.log_level, args.log_format)
    settings = settings_from(args)
    if settings.store == "elasticsearch" and not settings.es_url:
        print("sidecar: error: --store elasticsearch needs --es-url", file=sys.stderr)
        return 2
    if settings.cores and not set(settings.cores) & set(usable_cores()):
        print(f"sidecar: error: none of --cores {list(settings.cores)} is usable here: {usable_cores()}", file=sys.stderr)
        return 2
    try:
        lock = lock_data_dir(settings.data_dir)  # held until the process ends, however it ends
    except NodeLocked as exc:
        print(f"sidecar: error: {exc}", file=sys.stderr)
        return 1
    # nobody unauthenticated reaches a node listening beyond loopback, unless --insecure says so
    problem = asyncio.run(exposure_problem(settings))
    if problem is not None:
        print(f"sidecar: error: {problem}", file=sys.stderr)
        return 2
    node_metrics = NodeMetrics()
    uvicorn.run(
        create_app(settings, node_metrics),
        host=settings.host,
        port=settings.port,
        http=protocol_factory(HttpLimits(settings.max_header_bytes, settings.http_read_timeout_s), node_metrics),
        ws="none",
        timeout_keep_alive=settings.http_idle_timeout_s,
        log_level=args.log_level,
        log_config=None,  # uvicorn's loggers write through the node's handler, in its format
        access_log=args.access_log,
        timeout_graceful_shutdown=30,
    )
    lock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
