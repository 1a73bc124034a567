"""The Hugging Face hub's double: a local hub cache that `huggingface_hub` resolves with HF_HUB_OFFLINE=1.

Laid out as the hub client lays out what it downloads (`models--org--name/refs/main` naming a revision whose
files sit under `snapshots/<revision>/`), so `snapshot_download` finds a model here exactly as it finds one it
fetched earlier. Blobs are plain files rather than links: the offline lookup never reads the blob store.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name


def cache_hub_model(cache_dir: Path, repo_id: str, model_dir: Path) -> Path:
    """Put the saved model in `model_dir` into `cache_dir` as hub repository `repo_id`; return its snapshot."""
    repo = cache_dir / repo_folder_name(repo_id=repo_id, repo_type="model")
    revision = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40-hex commit id will do
    snapshot = repo / "snapshots" / revision
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return snapshot
