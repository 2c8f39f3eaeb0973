"""Fixtures for the deployment files under infra/: paths, and the compose file as Compose reads it."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from dotenv import dotenv_values

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"

# Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}.
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if not unset:
            return str(current)
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            raise ValueError(f"{name}: {arg}")
        return ""

    # "$$" is a literal "$" for Compose; shield it while substituting.
    return _VARIABLE.sub(replace, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="session")
def compose_raw() -> dict[str, Any]:
    """infra/docker-compose.yml as written, variables not substituted."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return {k: v for k, v in dotenv_values(ENV_EXAMPLE).items() if v is not None}


@pytest.fixture(scope="session")
def interpolate_compose(compose_raw: dict[str, Any]) -> Callable[[Mapping[str, str]], dict[str, Any]]:
    """Factory: the compose file with Compose's variable substitution applied for ``env``."""

    def make(env: Mapping[str, str]) -> dict[str, Any]:
        """Raises ValueError naming the variable when a ``${VAR:?message}`` is unset."""
        return _interpolate(compose_raw, env)

    return make


@pytest.fixture(scope="session")
def compose(interpolate_compose, env_example) -> dict[str, Any]:
    """The compose file as Compose reads it with infra/.env.example."""
    return interpolate_compose(env_example)
