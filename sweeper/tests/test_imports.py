"""The sweeper stands on its own: nothing of hydra-optuna-studies imports the app it sweeps, or torch.

Two checks, so that neither a lazy import inside a function nor an import pulled in by another package slips by:
every import statement in the sources (read as code, not run), and every module imported for real in a fresh
interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCES = Path(__file__).resolve().parents[1] / "src"
FORBIDDEN = ("sweep", "torch", "torchvision", "sklearn")  # the app, and what only the app may need


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SOURCES.rglob("*.py")):
        parts = path.relative_to(SOURCES).with_suffix("").parts
        found.append((".".join(p for p in parts if p != "__init__"), path))
    return found


def _imported(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports, anywhere in it (relative imports are its own)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_walk_sees_the_whole_package() -> None:
    names = {name for name, _ in _modules()}
    assert {"hydra_optuna_studies.contract", "hydra_optuna_studies.report",
            "hydra_plugins.hydra_optuna_studies._sweeper"} <= names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[name for name, _ in _modules()])
def test_no_source_file_imports_the_app_or_torch(module: str, path: Path) -> None:
    assert not _imported(path) & set(FORBIDDEN), (module, _imported(path) & set(FORBIDDEN))


def test_importing_every_module_loads_none_of_them() -> None:
    names = [name for name, _ in _modules()]
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
