"""The local stack: SeaweedFS (S3), the MLflow server and the Prefect server as local processes.

``up`` starts what is not already answering (S3 first: MLflow stores its artifacts there) and is
safe to repeat; ``down`` stops only the processes whose pid files it wrote; ``status`` reports
each service's health. State lives under ``settings.home``: ``run/*.pid``, ``logs/*.log``, the
services' data, and ``stack.env`` with the S3 credentials generated on the first ``up``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, SecretStr

from tuneline.errors import ConfigError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.stack._service import Service
from tuneline.stack.mlflow_server import MlflowServer
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


def stack_env_path(settings: Settings) -> Path:
    return settings.home / "stack.env"


def with_stack_credentials(settings: Settings, create: bool = False) -> Settings:
    """``settings`` with the local S3 credentials filled in.

    Credentials already in ``settings`` win; otherwise those in ``<home>/stack.env``; otherwise,
    when ``create``, new random ones are generated and written there (mode 600).
    """
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        return settings
    path = stack_env_path(settings)
    values = dotenv_values(path) if path.exists() else {}
    key_id = values.get("TUNELINE_AWS_ACCESS_KEY_ID")
    secret = values.get("TUNELINE_AWS_SECRET_ACCESS_KEY")
    if not (key_id and secret):
        if not create:
            return settings
        key_id = "TL" + secrets.token_hex(9).upper()
        secret = secrets.token_hex(20)
        _write_private(
            path, f"TUNELINE_AWS_ACCESS_KEY_ID={key_id}\nTUNELINE_AWS_SECRET_ACCESS_KEY={secret}\n"
        )
    return settings.model_copy(
        update={"aws_access_key_id": SecretStr(key_id), "aws_secret_access_key": SecretStr(secret)}
    )


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
    return ServiceStatus(
        name=name,
        url=service.url(settings),
        pid=record.pid if record else None,
        healthy=service.is_healthy(settings),
        log_path=_process.log_path(home, name),
        startup_s=startup_s,
    )


def up(settings: Settings, services: Iterable[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    """Start the chosen services that are not already healthy; return their statuses.

    A service already answering on its port (ours or not) is reused. Raises ``StackError``
    naming the service and quoting the tail of its log when one does not come up.
    """
    names = _selected(services)
    settings = with_stack_credentials(settings, create=True)
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
    """Health, pid and log of every stack service."""
    return [_status(settings, name) for name in SERVICE_NAMES]
