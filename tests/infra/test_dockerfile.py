"""infra/Dockerfile and mlflow.Dockerfile: locked dependencies, a non-root user, and a build context
that carries the sources the Dockerfile copies and nothing secret.

No Docker engine runs here, so nothing is built: these read the files as the builder would.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, f"{path.name}: a line continuation runs off the end of the file"
    pairs = []
    for entry in logical:
        keyword, _, args = entry.partition(" ")
        pairs.append((keyword.upper(), args.strip()))
    return pairs


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether ``path`` is excluded by .dockerignore ``patterns`` (last match wins, '!' re-includes)."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        candidates = [pattern, pattern.replace("**/", "")] if pattern.startswith("**/") else [pattern]
        # A pattern matching a folder applies to everything below it.
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, c) or c == "**" for p in prefixes for c in candidates):
            excluded = not negate
    return excluded


def _ignore_patterns(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.fixture(scope="module")
def worker() -> list[tuple[str, str]]:
    return _instructions(INFRA / "Dockerfile")


def test_worker_image_is_python_311_slim_and_runs_as_non_root(worker) -> None:
    assert worker[0] == ("FROM", "python:3.11-slim")
    users = [args for keyword, args in worker if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must end as a non-root user"


def test_worker_image_installs_the_lock_then_the_project_without_deps(worker) -> None:
    runs = [args for keyword, args in worker if keyword == "RUN"]
    lock_install = next(i for i, r in enumerate(runs) if "pip install -r requirements.lock" in r)
    project_install = next(i for i, r in enumerate(runs) if "pip install --no-deps ." in r)
    assert lock_install < project_install


def test_every_copied_source_is_in_the_repo_and_in_the_build_context(worker) -> None:
    patterns = _ignore_patterns(INFRA / "Dockerfile.dockerignore")
    sources = []
    for keyword, args in worker:
        if keyword == "COPY":
            *srcs, _destination = [a for a in args.split() if not a.startswith("--")]
            sources += srcs
    assert sources
    for source in sources:
        if "*" in source:
            continue  # a glob may match nothing (prefect.yaml before it exists)
        assert (REPO_ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not _ignored(source, patterns), f"COPY {source}: excluded by Dockerfile.dockerignore"


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        "infra/.env",
        ".tuneline/stack.env",
        ".venv/bin/python",
        ".git/config",
        "tuneline/__pycache__/x.pyc",
    ],
    ids=["env", "infra-env", "stack-env", "venv", "git", "pycache"],
)
def test_build_context_leaves_out_secrets_and_local_state(path: str) -> None:
    assert _ignored(path, _ignore_patterns(INFRA / "Dockerfile.dockerignore"))
    # mlflow.Dockerfile's context is infra/ itself, which holds infra/.env.
    assert _ignored(Path(path).name, _ignore_patterns(INFRA / ".dockerignore"))


def _locked(name: str) -> str:
    lock = (REPO_ROOT / "requirements.lock").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(name)}==(\S+)$", lock, flags=re.MULTILINE | re.IGNORECASE)
    assert match, f"{name} is not in requirements.lock"
    return match.group(1)


def test_mlflow_image_matches_the_locked_mlflow_and_boto3() -> None:
    steps = _instructions(INFRA / "mlflow.Dockerfile")
    assert steps[0] == ("FROM", f"ghcr.io/mlflow/mlflow:v{_locked('mlflow')}")
    install = " ".join(args for keyword, args in steps if keyword == "RUN")
    assert f"boto3=={_locked('boto3')}" in install
    assert re.search(r"psycopg2-binary==\d", install)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
