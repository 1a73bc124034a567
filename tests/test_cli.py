"""The command line as a new user meets it: `--version`, help with every default, one-line refusals, and every
option from a `SIDECAR_<OPTION>` environment variable, the command line winning."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from sidecar.cli import build_parser
from sidecar.cli_options import HelpFormatter, variable_for
from tests.support.node import NodeProcess


def sidecar(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "sidecar", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, **env})


def serve_parser() -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices["serve"]


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_version() -> None:
    done = sidecar("--version")
    assert (done.returncode, done.stdout) == (0, f"sidecar {version('sidecar')}\n")


def test_every_serve_option_has_help_that_shows_its_default() -> None:
    formatter = HelpFormatter("sidecar serve")
    for action in options(serve_parser()):
        text = formatter._get_help_string(action)
        assert action.help, action.option_strings
        assert "default" in text, action.option_strings
    shown = sidecar("serve", "--help").stdout
    assert "--port PORT           HTTP port, 1-65535 (default: 9700)" in shown
    assert "SIDECAR_<OPTION>" in shown, "the epilog says how the environment sets options"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--port", "0"], "argument --port: expected a port number from 1 to 65535, got [0]"),
        (["--port", "65536"], "argument --port: expected a port number from 1 to 65535, got [65536]"),
        (["--port", "http"], "argument --port: expected a port number from 1 to 65535, got [http]"),
        (["--log-level", "loud"], "argument --log-level: invalid choice: 'loud'"),
        (["--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
        (["--es-version", "9.x"], "argument --es-version: expected an Elasticsearch release like 9.2.0, got [9.x]"),
    ],
)
def test_a_wrong_value_is_one_line_and_exit_2(args: list[str], says: str) -> None:
    done = sidecar("serve", *args)
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"sidecar serve: error: {says}") and line.endswith("(see sidecar serve --help)")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SIDECAR_PORT", "70000", "expected a port number from 1 to 65535, got [70000]"),
        ("SIDECAR_LOG_LEVEL", "loud", "invalid choice [loud]"),
        ("SIDECAR_INSECURE", "maybe", "expected true or false, got [maybe]"),
    ],
)
def test_a_wrong_value_from_the_environment_names_its_variable(variable: str, value: str, says: str) -> None:
    done = sidecar("serve", **{variable: value})
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith(f"sidecar serve: error: environment variable {variable}: {says}")


def test_every_option_of_every_command_has_a_variable() -> None:
    parser = serve_parser()
    names = {action.dest: variable_for(action) for action in options(parser)}
    assert names["port"] == "SIDECAR_PORT" and names["es_url"] == "SIDECAR_ES_URL"
    assert names["insecure"] == "SIDECAR_INSECURE" and names["data_dir"] == "SIDECAR_DATA_DIR"
    assert all(name and name == "SIDECAR_" + dest.upper() for dest, name in names.items())


def test_values_from_the_environment_go_through_the_options_own_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_PORT", "9800")
    monkeypatch.setenv("SIDECAR_INSECURE", "true")
    monkeypatch.setenv("SIDECAR_TRUST_MODEL", "a, b")
    monkeypatch.setenv("SIDECAR_CORES", "0-1")
    monkeypatch.setenv("SIDECAR_ES_URL", "http://es:9200")
    args = build_parser().parse_args(["serve"])
    assert (args.port, args.insecure, args.trust_model, args.cores) == (9800, True, ["a", "b"], (0, 1))
    assert args.es_url == "http://es:9200"
    args = build_parser().parse_args(["serve", "--port", "9801", "--es-url", "http://other:9200"])
    assert (args.port, args.es_url) == (9801, "http://other:9200"), "the command line wins"
    pipelines = build_parser().parse_args(["pipelines", "install", "ner", "--model-id", "m"])
    assert pipelines.es_url == "http://es:9200", "one variable serves every command with that option"


def test_help_names_a_variable_but_never_prints_its_value() -> None:
    shown = sidecar("serve", "--help", SIDECAR_ES_PASSWORD="s3cret-value").stdout
    assert "s3cret-value" not in shown
    assert "(set by $SIDECAR_ES_PASSWORD)" in " ".join(shown.split())


def test_a_node_takes_its_options_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_CLUSTER_NAME", "from-the-environment")
    monkeypatch.setenv("SIDECAR_NODE_NAME", "from-the-environment")
    monkeypatch.setenv("SIDECAR_ACCESS_LOG", "true")
    node = NodeProcess(tmp_path / "data", name="from-the-command-line").start()
    try:
        info = node.client().info()
        assert info["cluster_name"] == "from-the-environment"
        assert info["name"] == "from-the-command-line", "the command line wins"
    finally:
        node.stop()
    assert '"GET / HTTP/1.1" 200' in node.log(), "SIDECAR_ACCESS_LOG=true turned the access log on"
