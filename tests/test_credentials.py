"""Every secret a command takes comes from a file or the environment as well as from the command line, where
anyone on the host can read it: `--es-api-key`, `--es-password`, `--callback-secret`."""

import pytest

from sidecar.cli import build_parser, settings_from
from sidecar.credentials import read_secret_files

SECRETS = [("--es-api-key", "es_api_key"), ("--es-password", "es_password"), ("--callback-secret", "callback_secret")]
USER = {"es_password": ["--es-user", "node"]}  # a password goes with a user


def parsed(*argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    read_secret_files(parser, args)
    return args


def refusal(capsys, *argv):
    with pytest.raises(SystemExit) as exited:
        parsed(*argv)
    assert exited.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1].removesuffix(" (see sidecar --help)")


@pytest.mark.parametrize(("option", "field"), SECRETS)
def test_a_secret_from_a_file_loses_only_its_final_newline(tmp_path, option, field):
    secret = tmp_path / "secret"
    secret.write_text("s3 cr#t\n")
    args = parsed("serve", *USER.get(field, []), f"{option}-file", str(secret))
    assert getattr(settings_from(args), field) == "s3 cr#t"


@pytest.mark.parametrize(("option", "field"), SECRETS)
def test_a_secret_from_the_environment_or_a_file_it_names(tmp_path, monkeypatch, option, field):
    variable = "SIDECAR_" + option[2:].upper().replace("-", "_")
    monkeypatch.setenv(variable, "from-the-environment")
    assert getattr(settings_from(parsed("serve", *USER.get(field, []))), field) == "from-the-environment"
    monkeypatch.delenv(variable)
    secret = tmp_path / "secret"
    secret.write_text("from-a-file")
    monkeypatch.setenv(f"{variable}_FILE", str(secret))
    assert getattr(settings_from(parsed("serve", *USER.get(field, []))), field) == "from-a-file"


def test_a_secret_given_twice_or_unreadable_is_refused(tmp_path, capsys):
    secret = tmp_path / "secret"
    secret.write_text("x")
    assert refusal(capsys, "serve", "--es-password", "y", "--es-password-file", str(secret), "--es-user", "u") == (
        "sidecar: error: --es-password and --es-password-file are mutually exclusive"
    )
    assert refusal(capsys, "serve", "--callback-secret-file", str(tmp_path / "missing")) == (
        f"sidecar: error: --callback-secret-file: cannot read [{tmp_path / 'missing'}]: No such file or directory"
    )
    assert refusal(capsys, "serve", "--es-user", "u") == (
        "sidecar: error: --es-user needs --es-password (or --es-password-file)"
    )


@pytest.mark.parametrize(
    "command", [["pipelines", "install", "ner", "--model-id", "m"], ["import", "model-dir", "--task-type", "ner"]]
)
def test_pipelines_and_import_take_the_same_credentials(tmp_path, monkeypatch, command):
    secret = tmp_path / "key"
    secret.write_text("ZW5jb2RlZA==\n")
    assert parsed(*command, "--es-api-key-file", str(secret)).es_api_key == "ZW5jb2RlZA=="
    monkeypatch.setenv("SIDECAR_ES_PASSWORD", "pw")
    args = parsed(*command, "--es-user", "elastic")
    assert (args.es_user, args.es_password) == ("elastic", "pw")
