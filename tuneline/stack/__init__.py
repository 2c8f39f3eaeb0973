"""The local stack: SeaweedFS (S3), the MLflow server and the Prefect server as local processes.

``up`` starts what is not already answering (S3 first: MLflow stores its artifacts there) and is
safe to repeat; ``down`` stops only the processes whose pid files it wrote; ``status`` reports
each service's health. State lives under ``settings.home``: ``run/*.pid``, ``logs/*.log``, the
services' data, and ``stack.env`` with the S3 credentials generated on the first ``up`` and
whether MLflow runs with basic auth (and as which user). The MLflow password is never written
there: it comes from the environment (``TUNELINE_MLFLOW_PASSWORD``), like any secret a user chose.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, SecretStr

from tuneline.errors import ConfigError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.stack._service import Service
from tuneline.stack.mlflow_server import DEFAULT_ADMIN, MlflowServer, admin_password
from tuneline.stack.prefect_server import PrefectServer
from tuneline.stack.seaweedfs import SeaweedFS

__all__ = [
    "SERVICE_NAMES",
    "ServiceStatus",
    "down",
    "stack_env_path",
    "status",
    "up",
    "with_stack_credentials",
]

_S3_KEY_ID = "TUNELINE_AWS_ACCESS_KEY_ID"
_S3_SECRET = "TUNELINE_AWS_SECRET_ACCESS_KEY"
_MLFLOW_AUTH = "TUNELINE_MLFLOW_AUTH"
_MLFLOW_USERNAME = "TUNELINE_MLFLOW_USERNAME"
_SAFE_USERNAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")

_SERVICES: dict[str, Service] = {s.name: s for s in (SeaweedFS(), MlflowServer(), PrefectServer())}
# Start order: MLflow proxies its artifacts to S3, so S3 comes first (and stops last).
SERVICE_NAMES: tuple[str, ...] = tuple(_SERVICES)


class ServiceStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    url: str
    pid: int | None = None
    healthy: bool
    log_path: Path
    startup_s: float | None = None  # set by ``up`` for a service it started now
    problem: str | None = None  # why a service that answers is still unusable (refused credentials)
    auth: bool = False  # whether clients must authenticate (MLflow basic auth)


def stack_env_path(settings: Settings) -> Path:
    return settings.home / "stack.env"


def with_stack_credentials(settings: Settings, create: bool = False) -> Settings:
    """``settings`` with the local S3 credentials and MLflow auth state of the stack filled in.

    S3 credentials already in ``settings`` win; otherwise those in ``<home>/stack.env``; otherwise,
    when ``create``, new random ones are generated and written there (mode 600). Whether MLflow
    runs with auth, and its user, come from ``stack.env`` unless ``settings`` set them explicitly.
    """
    path = stack_env_path(settings)
    values = _read_stack_env(path)
    update: dict[str, object] = {}
    if not (settings.aws_access_key_id and settings.aws_secret_access_key):
        key_id = values.get(_S3_KEY_ID)
        secret = values.get(_S3_SECRET)
        if not (key_id and secret) and create:
            key_id = "TL" + secrets.token_hex(9).upper()
            secret = secrets.token_hex(20)
            _update_stack_env(path, {_S3_KEY_ID: key_id, _S3_SECRET: secret})
        if key_id and secret:
            update |= {"aws_access_key_id": SecretStr(key_id), "aws_secret_access_key": SecretStr(secret)}
    recorded_auth = values.get(_MLFLOW_AUTH)
    if recorded_auth and "mlflow_auth" not in settings.model_fields_set:
        update["mlflow_auth"] = recorded_auth.lower() == "true"
    if values.get(_MLFLOW_USERNAME) and settings.mlflow_username is None:
        update["mlflow_username"] = values[_MLFLOW_USERNAME]
    return settings.model_copy(update=update) if update else settings


def _record_mlflow_auth(settings: Settings) -> Settings:
    """Write whether MLflow runs with auth (and its admin) to ``stack.env``; return the settings used."""
    if not settings.mlflow_auth:
        _update_stack_env(stack_env_path(settings), {_MLFLOW_AUTH: "false"})
        return settings
    admin_password(settings)  # refuse before anything starts, not half-way through
    username = settings.mlflow_username or DEFAULT_ADMIN
    if not _SAFE_USERNAME.fullmatch(username):
        raise ConfigError(
            f"mlflow username {username!r} is not allowed for the local stack: use letters, digits and . _ @ -"
        )
    _update_stack_env(stack_env_path(settings), {_MLFLOW_AUTH: "true", _MLFLOW_USERNAME: username})
    return settings.model_copy(update={"mlflow_username": username})


def _read_stack_env(path: Path) -> dict[str, str]:
    return {k: v for k, v in (dotenv_values(path) if path.exists() else {}).items() if v is not None}


def _update_stack_env(path: Path, changes: dict[str, str]) -> None:
    current = _read_stack_env(path)
    current.update(changes)
    # Values are generated tokens, "true"/"false" and checked user names: no quoting needed.
    _write_private(path, "".join(f"{key}={value}\n" for key, value in current.items()))


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start: the secret is never readable by others, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _selected(services: Iterable[str]) -> list[str]:
    wanted = list(services)
    unknown = sorted(set(wanted) - set(SERVICE_NAMES))
    if unknown:
        raise ConfigError(f"unknown stack service(s) {unknown}; choose from {list(SERVICE_NAMES)}")
    return [name for name in SERVICE_NAMES if name in wanted]


def _status(settings: Settings, name: str, startup_s: float | None = None) -> ServiceStatus:
    service = _SERVICES[name]
    home = settings.home.resolve()
    record = _process.running_record(home, name)
    answers = service.is_healthy(settings)
    problem = service.check(settings) if answers else None
    return ServiceStatus(
        name=name,
        url=service.url(settings),
        pid=record.pid if record else None,
        healthy=answers and problem is None,
        log_path=_process.log_path(home, name),
        startup_s=startup_s,
        problem=problem,
        auth=name == "mlflow" and settings.mlflow_auth,
    )


def up(settings: Settings, services: Iterable[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    """Start the chosen services that are not already healthy; return their statuses.

    A service already answering on its port (ours or not) is reused. Raises ``StackError``
    naming the service and quoting the tail of its log when one does not come up.
    """
    names = _selected(services)
    settings = with_stack_credentials(settings, create=True)
    if "mlflow" in names:
        settings = _record_mlflow_auth(settings)
    home = settings.home.resolve()
    statuses = []
    for name in names:
        service = _SERVICES[name]
        startup_s = None
        if not service.is_healthy(settings):
            record = _process.running_record(home, name)
            if record is None:
                service.prepare(settings)
                env = {**os.environ, **service.environment(settings)}
                record = _process.start_detached(home, name, service.command(settings), env, cwd=home)
            # else: ours and still starting (a parallel ``up``): wait for the same process.
            startup_s = _process.wait_healthy(
                home, name, record, lambda s=service: s.is_healthy(settings), service.startup_timeout_s
            )
        service.after_start(settings)
        statuses.append(_status(settings, name, startup_s))
    return statuses


def down(settings: Settings, services: Iterable[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    """Stop the chosen services this stack started (by their pid files), last-started first.

    A service answering on its port that this stack did not start is left alone.
    """
    home = settings.home.resolve()
    for name in reversed(_selected(services)):
        _process.stop(home, name)
    return status(settings)


def status(settings: Settings) -> list[ServiceStatus]:
    """Health, pid and log of every stack service (MLflow checked with the stack's credentials)."""
    settings = with_stack_credentials(settings)
    return [_status(settings, name) for name in SERVICE_NAMES]
