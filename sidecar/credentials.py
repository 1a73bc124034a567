"""The secrets commands take, and where they may come from.

`--es-api-key`, `--es-password` and `--callback-secret` each have a `--<option>-file` twin that reads the secret
from a file (its content less the final newline, as Docker and Kubernetes mount secrets), and like every option both
can be set in the environment (`SIDECAR_ES_PASSWORD`, `SIDECAR_ES_PASSWORD_FILE`): a secret never has to be on a
command line, where anyone on the host can read it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SECRETS = ("es_api_key", "es_password", "callback_secret")


def add_es_credentials(group: Any, whose: str) -> None:
    """`--es-api-key`, or `--es-user` with `--es-password`, each secret with its `-file` twin."""
    group.add_argument("--es-api-key", help=f"{whose} API key (encoded form)")
    add_secret_file(group, "--es-api-key")
    group.add_argument("--es-user", help=f"{whose} user, with --es-password")
    group.add_argument("--es-password", help="the password of --es-user")
    add_secret_file(group, "--es-password")


def add_secret_file(group: Any, option: str) -> None:
    group.add_argument(f"{option}-file", type=Path, metavar="FILE", help=f"read {option} from FILE")


def read_secret_files(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Put each `--<secret>-file`'s content in its secret; a secret given both ways is an error (exit 2)."""
    for name in SECRETS:
        path = getattr(args, f"{name}_file", None)
        if path is None:
            continue
        option = "--" + name.replace("_", "-")
        if getattr(args, name, None) is not None:
            parser.error(f"{option} and {option}-file are mutually exclusive")
        try:
            setattr(args, name, path.read_text().rstrip("\r\n"))
        except OSError as error:
            parser.error(f"{option}-file: cannot read [{path}]: {error.strerror}")
    if getattr(args, "es_user", None) and getattr(args, "es_password", None) is None:
        parser.error("--es-user needs --es-password (or --es-password-file)")


def es_auth(args: argparse.Namespace) -> dict[str, Any]:
    """The `elasticsearch` client's credential options for what the command was given."""
    if args.es_api_key:
        return {"api_key": args.es_api_key}
    if args.es_user:
        return {"basic_auth": (args.es_user, args.es_password)}
    return {}
