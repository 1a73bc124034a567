"""`sidecar import` signs in to a node whose cluster has security on with `--es-user`/`--es-password` or
`--es-api-key`, taken from the environment or a file, with nothing secret in the URL."""

import base64
import os
import subprocess
import sys

import pytest

from tests.support.es_cluster_double import EsClusterDouble
from tests.support.models import tiny_model
from tests.support.node import NodeProcess


@pytest.fixture(scope="module")
def secured():
    with EsClusterDouble(security=True) as double:
        double.add_user("sidecar-node", "node-password", ["all"])
        double.add_user("uploader", "uploader-password", ["manage_ml"])
        yield double


@pytest.fixture(scope="module")
def node(secured, tmp_path_factory):
    root = tmp_path_factory.mktemp("import-credentials")
    password = root / "node-password"
    password.write_text("node-password\n")
    args = ("--es-url", secured.url, "--es-user", "sidecar-node", "--es-password-file", str(password))
    process = NodeProcess(root / "data", *args).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("hf"), "bert", "ner")


def sidecar_import(node, model_dir, model_id, *args, env=None):
    command = [sys.executable, "-m", "sidecar", "import", str(model_dir), "--task-type", "ner"]
    command += ["--model-id", model_id, "--url", node.url, *args]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **(env or {})}
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)


def test_a_user_and_password_from_the_environment(node, model_dir):
    env = {"SIDECAR_ES_USER": "uploader", "SIDECAR_ES_PASSWORD": "uploader-password"}
    done = sidecar_import(node, model_dir, "by-user", env=env)
    assert (done.returncode, done.stdout.strip().splitlines()[-1]) == (0, "uploaded [by-user]"), done.stderr


def test_an_api_key_from_a_file(node, model_dir, secured, tmp_path):
    secured.add_api_key("uploader-key", "uploader", ["manage_ml"])
    key = tmp_path / "api-key"
    key.write_text(base64.b64encode(b"uploader-key:secret-uploader-key").decode() + "\n")
    done = sidecar_import(node, model_dir, "by-key", "--es-api-key-file", str(key))
    assert (done.returncode, done.stdout.strip().splitlines()[-1]) == (0, "uploaded [by-key]"), done.stderr


def test_without_credentials_the_cluster_says_no(node, model_dir):
    done = sidecar_import(node, model_dir, "anonymous")
    assert done.returncode == 1
    assert "missing authentication credentials" in done.stderr
