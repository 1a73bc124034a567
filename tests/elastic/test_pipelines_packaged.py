"""The pipeline bodies ship inside the package: a plain (non-editable) install, built from what the compose image
copies (`pyproject.toml`, `README.md`, `sidecar/`), renders every pipeline with no checkout in sight."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from sidecar.elastic.pipelines import PIPELINES_DIR

ROOT = Path(__file__).resolve().parents[2]


def test_the_top_level_folder_is_the_packaged_one():
    assert (ROOT / "pipelines").resolve() == PIPELINES_DIR == ROOT / "sidecar" / "pipelines"


def test_a_plain_install_renders_every_pipeline(tmp_path):
    source = tmp_path / "source"  # the compose image's build context, outside the checkout
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "sidecar", source / "sidecar", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--target", str(target), str(source)], check=True, cwd=tmp_path)
    script = (
        "import sidecar, sidecar.elastic.pipelines as p\n"
        "values = dict(model_id='m', field='f', pipeline_id='m-x', index_pattern='x-*', dims=3)\n"
        "names = [str(f.relative_to(p.PIPELINES_DIR).with_suffix('')) for f in p.PIPELINES_DIR.rglob('*.json')]\n"
        "print(sidecar.__file__, sorted(names) == sorted(n for n in names if p.body(n, **values)), len(names))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    shutil.rmtree(source)  # nothing may be read from the source tree
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    files = len(list(PIPELINES_DIR.rglob("*.json")))
    assert run.stdout.split() == [str(target / "sidecar" / "__init__.py"), "True", str(files)]
