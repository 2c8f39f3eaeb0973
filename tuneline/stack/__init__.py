"""The local stack: SeaweedFS (S3), the MLflow server and the Prefect server as local processes.

``up`` starts what is not already answering (S3 first: MLflow stores its artifacts there) and is
safe to repeat; ``down`` stops only the processes whose pid files it wrote; ``status`` reports
each service's health. State lives under ``settings.home``: ``run/*.pid``, ``logs/*.log``, the
services' data, and ``stack.env`` (mode 600) with what the first ``up`` generates: the pipeline's
and the audit writer's S3 keys, the Prefect API's basic-auth string, and the MLflow admin's
password when the user chose none. A password the user chose (``TUNELINE_MLFLOW_PASSWORD``) is
never written there. Everything is authenticated unless the stack was started with
``insecure`` (``tuneline stack up --insecure``), which is recorded there too.
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
    "PREFECT_USER",
    "ServiceStatus",
    "down",
    "stack_env_path",
    "status",
    "up",
    "with_stack_credentials",
]

_S3_KEY_ID = "TUNELINE_AWS_ACCESS_KEY_ID"
_S3_SECRET = "TUNELINE_AWS_SECRET_ACCESS_KEY"
_AUDIT_KEY_ID = "TUNELINE_AUDIT_AWS_ACCESS_KEY_ID"
_AUDIT_SECRET = "TUNELINE_AUDIT_AWS_SECRET_ACCESS_KEY"
_PREFECT_AUTH = "TUNELINE_PREFECT_API_AUTH_STRING"
_MLFLOW_AUTH = "TUNELINE_MLFLOW_AUTH"
_MLFLOW_USERNAME = "TUNELINE_MLFLOW_USERNAME"
_MLFLOW_PASSWORD = "TUNELINE_MLFLOW_PASSWORD"
_INSECURE = "TUNELINE_STACK_INSECURE"
# The user name in the Prefect auth string: Prefect compares the whole "user:password" string.
PREFECT_USER = "tuneline"
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
    auth: bool = False  # whether clients must authenticate to it


def stack_env_path(settings: Settings) -> Path:
    return settings.home / "stack.env"


def with_stack_credentials(settings: Settings, create: bool = False) -> Settings:
    """``settings`` with the local stack's credentials and mode filled in from ``<home>/stack.env``.

    Values already in ``settings`` win; otherwise those in ``stack.env``; otherwise, when
    ``create``, new random ones are generated and written there (mode 600): the pipeline's and
    the audit writer's S3 keys, the Prefect auth string, and an MLflow admin password (only when
    MLflow runs with auth and no password was given). Whether the stack is insecure, whether
    MLflow runs with auth, and its user come from ``stack.env`` unless ``settings`` set them.
    """
    path = stack_env_path(settings)
    values = _read_stack_env(path)
    update: dict[str, object] = {}
    generated: dict[str, str] = {}

    def pair(key_field: str, secret_field: str, key_var: str, secret_var: str, prefix: str) -> None:
        if getattr(settings, key_field) and getattr(settings, secret_field):
            return
        key_id, secret = values.get(key_var), values.get(secret_var)
        if not (key_id and secret) and create:
            key_id, secret = prefix + secrets.token_hex(9).upper(), secrets.token_hex(20)
            generated.update({key_var: key_id, secret_var: secret})
        if key_id and secret:
            update.update({key_field: SecretStr(key_id), secret_field: SecretStr(secret)})

    pair("aws_access_key_id", "aws_secret_access_key", _S3_KEY_ID, _S3_SECRET, "TL")
    pair("audit_aws_access_key_id", "audit_aws_secret_access_key", _AUDIT_KEY_ID, _AUDIT_SECRET, "TLAUDIT")
    if settings.prefect_api_auth_string is None:
        auth_string = values.get(_PREFECT_AUTH)
        if not auth_string and create:
            auth_string = generated[_PREFECT_AUTH] = f"{PREFECT_USER}:{secrets.token_urlsafe(24)}"
        if auth_string:
            update["prefect_api_auth_string"] = SecretStr(auth_string)
    recorded_insecure = values.get(_INSECURE)
    if recorded_insecure and "stack_insecure" not in settings.model_fields_set:
        update["stack_insecure"] = recorded_insecure.lower() == "true"
    insecure = bool(update.get("stack_insecure", settings.stack_insecure))
    recorded_auth = values.get(_MLFLOW_AUTH)
    if "mlflow_auth" not in settings.model_fields_set:
        if insecure:
            update["mlflow_auth"] = False
        elif recorded_auth:
            update["mlflow_auth"] = recorded_auth.lower() == "true"
    mlflow_auth = bool(update.get("mlflow_auth", settings.mlflow_auth))
    if settings.mlflow_username is None:
        if values.get(_MLFLOW_USERNAME):
            update["mlflow_username"] = values[_MLFLOW_USERNAME]
        elif mlflow_auth:
            update["mlflow_username"] = DEFAULT_ADMIN  # whom `up` creates, so that clients send a user
    if settings.mlflow_password is None:
        password = values.get(_MLFLOW_PASSWORD)
        if not password and create and mlflow_auth:
            # The user chose none: a generated one, kept like the S3 keys (a chosen one never is).
            password = generated[_MLFLOW_PASSWORD] = secrets.token_urlsafe(24)
        if password:
            update["mlflow_password"] = SecretStr(password)
    if generated:
        _update_stack_env(path, generated)
    return settings.model_copy(update=update) if update else settings


def _record_mode(settings: Settings) -> Settings:
    """Write the stack's mode (insecure or not, MLflow auth and admin) to ``stack.env``."""
    _update_stack_env(stack_env_path(settings), {_INSECURE: str(settings.stack_insecure).lower()})
    return _record_mlflow_auth(settings)


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
    auth = not settings.stack_insecure and (name != "mlflow" or settings.mlflow_auth)
    return ServiceStatus(
        name=name,
        url=service.url(settings),
        pid=record.pid if record else None,
        healthy=answers and problem is None,
        log_path=_process.log_path(home, name),
        startup_s=startup_s,
        problem=problem,
        auth=auth,
    )


def up(settings: Settings, services: Iterable[str] = SERVICE_NAMES) -> list[ServiceStatus]:
    """Start the chosen services that are not already healthy; return their statuses.

    A service already answering on its port (ours or not) is reused. Raises ``StackError``
    naming the service and quoting the tail of its log when one does not come up.
    """
    names = _selected(services)
    settings = _record_mode(with_stack_credentials(settings, create=True))
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
