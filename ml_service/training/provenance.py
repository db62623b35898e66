"""Where a model came from: code version, git commit and the candidate's identity."""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
from pathlib import Path
from types import ModuleType

from ml_service.training.config import PipelineConfig


def code_version(*modules: ModuleType | str) -> str:
    """SHA-256 over the source files of ``modules`` (a package counts all its files).

    Args:
        modules: Modules, or names of modules to import (e.g. a spec's
            ``package``).
    """
    files: list[Path] = []
    for module in modules:
        loaded = importlib.import_module(module) if isinstance(module, str) else module
        path = Path(loaded.__file__ or "")
        if path.name == "__init__.py":
            root = path.parent
            files += sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
        else:
            files.append(path)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def git_commit() -> tuple[str, bool]:
    """The commit of the project being run and whether its tree has local changes.

    Asks git in the project directory; outside a checkout (an installed
    wheel), falls back to ``GITHUB_SHA`` or "unknown".
    """
    project = Path(__file__).resolve().parents[2]

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=project, capture_output=True, text=True, timeout=10,
            check=True,
        ).stdout.strip()

    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return os.environ.get("GITHUB_SHA", "unknown"), False


def fingerprint(digest: str, config: PipelineConfig, version: str) -> str:
    """Identity of a candidate: same data, same model code, same params."""
    return hashlib.sha256(f"{digest}:{config.fingerprint()}:{version}".encode()).hexdigest()
