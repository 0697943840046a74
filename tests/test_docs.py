"""The docs' examples run as written, and the site builds strictly (a broken link or anchor, a page left out of the
navigation: each fails)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _block(page: str, after: str, language: str) -> str:
    """The first ``language`` code block of docs/``page`` after the text ``after``."""
    text = (ROOT / "docs" / page).read_text()
    return text.split(after, 1)[1].split(f"```{language}\n", 1)[1].split("```", 1)[0]


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "sweeper" / "workers" / "index.html").is_file()


def test_the_add_a_measure_example_works_as_the_docs_say(tmp_path: Path) -> None:
    """The module as written, and the one line in conf/config.yaml's defaults list: the trial then logs it and a
    sweep may optimise it. Run on a copy of the package (PYTHONPATH puts it before the installed one)."""
    code = _block("measures.md", "**Add a measure**", "python")
    package = tmp_path / "src" / "sweep"
    shutil.copytree(ROOT / "src" / "sweep", package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "measures" / "weight_norm.py").write_text(code)
    config = package / "conf" / "config.yaml"
    config.write_text(config.read_text().replace("  - _self_\n", "  - weight_norm: default\n  - _self_\n", 1))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "src"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/m.db"}
    result = subprocess.run([sys.executable, "-m", "sweep.cli", "objective=[weight_norm]", "train.epochs=1",
                             "deepfool.enabled=false"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("weight_norm ")
