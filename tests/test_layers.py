"""Static checks that run with the suite: the layering contracts in pyproject.toml (the core never
imports Prefect; flows > tasks > core) and ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint_imports, "import-linter is part of the test dependencies"
    result = subprocess.run([lint_imports], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert ", 0 broken" in result.stdout
    # the provider contracts (issue 16) are among those checked
    assert "reach backends only through the registry KEPT" in " ".join(result.stdout.split())


def test_ruff_finds_nothing() -> None:
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is part of the test dependencies"
    paths = ["tuneline", "tasks", "flows", "tuneline_cli", "tests", "bench", "examples"]
    result = subprocess.run([ruff, "check", *paths], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
