"""Where `sidecar import` finds the model: a local directory, or a Hugging Face hub id through the hub's own client.

Both are checked before anything is traced, and a model that is not there is one line, not a traceback.
The hub client honours its usual environment (`HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`, `HF_TOKEN`), so an
offline machine imports from a cache filled elsewhere.
"""

from __future__ import annotations

from pathlib import Path

# What tracing reads: configs, vocabularies, sentencepiece models, and the weights in one format. ONNX,
# OpenVINO, TensorFlow and Flax copies, which many hub repositories also hold, are never downloaded.
METADATA_FILES = ("*.json", "*.txt", "*.model")
WEIGHT_FILES = (("*.safetensors",), ("*pytorch_model*.bin",))  # preferred format first


class SourceError(Exception):
    """A model that cannot be had, worded in one line for the command line."""


def local_model(model_dir: str) -> Path:
    """The directory, if it looks like a Hugging Face model: a `config.json` in it."""
    path = Path(model_dir)
    if not path.exists():
        raise SourceError(f"model directory [{model_dir}] does not exist")
    if not path.is_dir():
        raise SourceError(f"[{model_dir}] is not a directory")
    if not (path / "config.json").is_file():
        raise SourceError(f"[{model_dir}] is not a Hugging Face model directory: it has no config.json")
    return path


def hub_model(hub_model_id: str, token: str | None = None) -> Path:
    """The model's snapshot folder in the local hub cache, downloaded there first unless the hub is offline."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        snapshot = Path(snapshot_download(hub_model_id, token=token, allow_patterns=list(METADATA_FILES)))
        for patterns in WEIGHT_FILES:
            if not _holds_weights(snapshot):
                snapshot_download(hub_model_id, token=token, allow_patterns=list(patterns))
    except HFValidationError as error:
        raise SourceError(f"[{hub_model_id}] is not a Hugging Face hub model id: {_first_line(error)}") from None
    except GatedRepoError:
        raise SourceError(f"model [{hub_model_id}] is gated: accept its terms, then pass --hub-access-token") from None
    except RepositoryNotFoundError:
        raise SourceError(
            f"model [{hub_model_id}] not found on the Hugging Face hub (a private model needs --hub-access-token)"
        ) from None
    except RevisionNotFoundError:
        raise SourceError(f"model [{hub_model_id}] has no main revision on the Hugging Face hub") from None
    except LocalEntryNotFoundError:
        raise SourceError(
            f"model [{hub_model_id}] not found in the local hub cache, and the hub cannot be reached or is "
            "switched off (HF_HUB_OFFLINE)"
        ) from None
    except HfHubHTTPError as error:
        raise SourceError(f"the Hugging Face hub refused [{hub_model_id}]: {_first_line(error)}") from None
    if not (snapshot / "config.json").is_file():
        raise SourceError(f"hub model [{hub_model_id}] is not a transformers model: it has no config.json")
    return snapshot


def _holds_weights(snapshot: Path) -> bool:
    return any(snapshot.rglob(pattern) for patterns in WEIGHT_FILES for pattern in patterns)


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
