"""Finding the model before anything is traced: local directories, and hub ids through the hub client offline."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub.constants
import pytest

from sidecar.importer.source import SourceError, hub_model, local_model
from tests.support.hub_cache import cache_hub_model


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty hub cache, as if HF_HUB_CACHE had named it when the process started."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_hub_client_is_offline_in_tests() -> None:
    assert huggingface_hub.constants.HF_HUB_OFFLINE


def test_a_hub_id_resolves_to_its_snapshot_in_the_local_cache(hub_cache: Path, tiny_ner_dir: Path) -> None:
    snapshot = cache_hub_model(hub_cache, "acme/tiny-ner", tiny_ner_dir)
    assert hub_model("acme/tiny-ner") == snapshot
    assert hub_model("acme/tiny-ner", token="hf_unused_offline") == snapshot


def test_a_hub_id_missing_from_the_offline_cache_is_one_line(hub_cache: Path, tiny_ner_dir: Path) -> None:
    cache_hub_model(hub_cache, "acme/tiny-ner", tiny_ner_dir)
    with pytest.raises(SourceError) as raised:
        hub_model("acme/tiny-ner-v2")
    assert str(raised.value) == (
        "model [acme/tiny-ner-v2] not found in the local hub cache, and the hub cannot be reached or is switched "
        "off (HF_HUB_OFFLINE)"
    )


def test_a_malformed_hub_id_is_one_line(hub_cache: Path) -> None:
    with pytest.raises(SourceError) as raised:
        hub_model("acme//tiny ner")
    assert str(raised.value).startswith("[acme//tiny ner] is not a Hugging Face hub model id: ")
    assert "\n" not in str(raised.value)


def test_a_hub_repository_without_config_json_is_not_a_model(hub_cache: Path, tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    (files / "README.md").write_text("a dataset card\n")
    cache_hub_model(hub_cache, "acme/readme", files)
    with pytest.raises(SourceError) as raised:
        hub_model("acme/readme")
    assert str(raised.value) == "hub model [acme/readme] is not a transformers model: it has no config.json"


def test_a_model_directory_is_taken_as_it_is(tiny_ner_dir: Path) -> None:
    assert local_model(str(tiny_ner_dir)) == tiny_ner_dir


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: None, "model directory [{}] does not exist"),
        (lambda path: path.write_text("weights"), "[{}] is not a directory"),
        (lambda path: path.mkdir(), "[{}] is not a Hugging Face model directory: it has no config.json"),
    ],
    ids=["missing", "a-file", "no-config-json"],
)
def test_a_path_that_is_not_a_model_directory_is_one_line(tmp_path: Path, make, reason: str) -> None:  # noqa: ANN001
    path = tmp_path / "model"
    make(path)
    with pytest.raises(SourceError) as raised:
        local_model(str(path))
    assert str(raised.value) == reason.format(path)
