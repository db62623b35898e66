"""The arrows between packages: checked by import-linter in `make lint`, and here that the
check really fails when a model import comes back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env={**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{REPO / 'src'}"},
        capture_output=True, text=True, timeout=120,
    )


def copy_of_the_machinery(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "ml_service", tmp_path / "ml_service",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_no_module_of_the_machinery_names_the_example_model():
    offenders = [str(path.relative_to(REPO)) for path in (REPO / "ml_service").rglob("*.py")
                 if "diabetes_regression" in path.read_text()]
    assert offenders == []


def test_the_contracts_hold_on_the_tree(tmp_path):
    result = lint_imports(copy_of_the_machinery(tmp_path))
    assert result.returncode == 0, result.stdout[-3000:]
    assert "5 kept, 0 broken" in result.stdout


def test_an_import_of_the_model_package_breaks_the_build(tmp_path):
    root = copy_of_the_machinery(tmp_path)
    (root / "ml_service" / "training" / "shortcut.py").write_text(
        "from diabetes_regression.schema import CONTRACT  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "ml_service.training.shortcut -> diabetes_regression.schema" in result.stdout


def test_serving_importing_mlflow_breaks_the_build(tmp_path):
    root = copy_of_the_machinery(tmp_path)
    app = root / "ml_service" / "serving" / "app.py"
    app.write_text(app.read_text() + "\n\ndef _late():\n    import mlflow  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode != 0 and "ml_service.serving is not allowed to import mlflow" in (
        result.stdout)


def test_an_import_cycle_between_modules_breaks_the_build(tmp_path):
    """tracking -> card is an arrow; card -> tracking back would close a cycle."""
    root = copy_of_the_machinery(tmp_path)
    card = root / "ml_service" / "training" / "card.py"
    card.write_text(card.read_text() + "\n\ndef _late():\n"
                    "    from ml_service.training.tracking import log_card  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "No cycles are allowed in ml_service.training" in result.stdout


def test_a_lower_layer_importing_a_higher_one_breaks_the_build(tmp_path):
    root = copy_of_the_machinery(tmp_path)
    store = root / "ml_service" / "registry" / "store.py"
    store.write_text(store.read_text() + "\n\ndef _late():\n"
                     "    from ml_service.many import pipeline  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode != 0
    assert "ml_service.registry is not allowed to import ml_service.many" in result.stdout
