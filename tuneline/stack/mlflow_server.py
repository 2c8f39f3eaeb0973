"""The MLflow tracking server: runs and registry in SQLite, artifacts proxied to the local S3.

Clients talk only HTTP to it (``--artifacts-destination``): they need no S3 credentials, and the
server holds the S3 endpoint and keys in its own environment.

With ``settings.mlflow_auth`` (the default; off only in an insecure stack) it runs MLflow's
basic-auth app: users and permissions live in their own SQLite database beside the tracking one,
the admin (``mlflow_username``, by default "admin") is created with ``mlflow_password`` on the
first start, and every API call then needs those credentials. The password is never put on the
command line: the server reads it from its environment, once, to create the admin.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import sys
from pathlib import Path

from tuneline.errors import ConfigError, StackError
from tuneline.settings import Settings
from tuneline.stack._service import http_ok, http_status, service_dir
from tuneline.stack.seaweedfs import SeaweedFS
from tuneline.storage.s3 import sse_request_args

__all__ = ["DEFAULT_ADMIN", "MlflowServer", "admin_password"]

DEFAULT_ADMIN = "admin"

_MIN_PASSWORD_LENGTH = 12
AUTH_CACHE_TTL_S = 60  # how long the server trusts a credential it has checked (see _write_auth_config)
# Any authenticated read answers this probe; an unauthenticated one gets 401 when auth is on.
_AUTH_PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"
# The first authenticated call after a start took over 5 s on this busy two-core machine (lazy
# store set-up and a deliberately slow password hash).
_PROBE_TIMEOUT_S = 30.0


class MlflowServer:
    name = "mlflow"
    # ~20 s seen here on a quiet machine; the first start also migrates the database.
    startup_timeout_s = 180.0

    def url(self, settings: Settings) -> str:
        return f"http://127.0.0.1:{settings.mlflow_port}"

    def _db_path(self, settings: Settings) -> Path:
        return service_dir(settings, "mlflow") / "mlflow.db"

    def auth_config_path(self, settings: Settings) -> Path:
        return service_dir(settings, "mlflow") / "basic_auth.ini"

    def command(self, settings: Settings) -> list[str]:
        argv = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{self._db_path(settings)}",
            "--artifacts-destination",
            f"s3://{settings.s3_bucket}/mlflow",
            "--host",
            "127.0.0.1",
            "--port",
            str(settings.mlflow_port),
            # One worker: the machine has two cores and the tracking load is light. (The auth
            # app's CSRF key is per start, which also needs all workers to share one process.)
            "--workers",
            "1",
            # Clients keep HTTP connections alive; without a bound, shutdown waits for them until
            # ``stop`` escalates to SIGKILL.
            "--uvicorn-opts",
            "--timeout-graceful-shutdown 3",
        ]
        if settings.mlflow_auth:
            argv += ["--app-name", "basic-auth"]
        return argv

    def environment(self, settings: Settings) -> dict[str, str]:
        if not (settings.aws_access_key_id and settings.aws_secret_access_key):
            raise StackError("mlflow: the artifact proxy needs the S3 credentials")
        local_s3 = f"http://127.0.0.1:{settings.s3_port}"
        env = {
            "MLFLOW_S3_ENDPOINT_URL": local_s3,
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key.get_secret_value(),
            "AWS_DEFAULT_REGION": settings.aws_region,
            # MLflow 3 starts seven job-runner processes (huey consumers, ~50 threads) for its GenAI
            # jobs (prompt optimisation, trace roll-ups), which Tuneline never submits: on two cores
            # they tripled the server's start time and held ~1 GB.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        # Artifacts the server proxies are encrypted like Tuneline's own writes (the server's S3 is
        # the local one, so "unset" resolves as for a custom endpoint).
        sse = sse_request_args(settings.model_copy(update={"s3_endpoint_url": local_s3}))
        if sse:
            env["MLFLOW_S3_UPLOAD_EXTRA_ARGS"] = json.dumps(sse)
        if settings.mlflow_auth:
            env.update(
                {
                    "MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config_path(settings)),
                    "MLFLOW_AUTH_ADMIN_USERNAME": settings.mlflow_username or DEFAULT_ADMIN,
                    "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password(settings),
                    # Signs the sign-up form's CSRF token only; a new one per start just expires
                    # forms left open across a restart.
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32),
                }
            )
        return env

    def prepare(self, settings: Settings) -> None:
        if not SeaweedFS().is_healthy(settings):
            raise StackError(
                f"mlflow: its artifact store, the local S3 on port {settings.s3_port}, is not running; "
                "start the 's3' service first"
            )
        # Created once up front: concurrent first writers otherwise hit "database is locked".
        sqlite3.connect(self._db_path(settings)).close()
        if settings.mlflow_auth:
            self._write_auth_config(settings)

    def _write_auth_config(self, settings: Settings) -> None:
        auth_db = service_dir(settings, "mlflow") / "basic_auth.db"
        # No admin_password here: it comes from the environment, so no file holds it in clear.
        # NO_PERMISSIONS: a user the admin adds sees nothing until granted it.
        # auth_cache_ttl_seconds: MLflow checks a password by its PBKDF2 hash, by design tens of
        # milliseconds of server CPU (a request took 0.2 s here, 0.007 s cached); a lifecycle makes
        # hundreds of requests (each trace assessment of its evaluation runs is one). With the cache
        # a credential is checked once a minute per server worker; by MLflow's account, a password
        # changed or a user deleted through its API is refused at once by the worker that made the
        # change, by the others within the minute.
        self.auth_config_path(settings).write_text(
            "[mlflow]\n"
            "default_permission = NO_PERMISSIONS\n"
            f"database_uri = sqlite:///{auth_db}\n"
            f"admin_username = {settings.mlflow_username or DEFAULT_ADMIN}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "grant_default_workspace_access = false\n"
            f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n",
            encoding="utf-8",
        )

    def is_healthy(self, settings: Settings) -> bool:
        # /health answers without credentials even with auth on.
        return http_ok(f"{self.url(settings)}/health")

    def after_start(self, settings: Settings) -> None:
        problem = self.check(settings)
        if problem is not None:
            raise StackError(f"mlflow: {problem}")

    def check(self, settings: Settings) -> str | None:
        probe = f"{self.url(settings)}{_AUTH_PROBE}"
        anonymous = http_status(probe, timeout_s=_PROBE_TIMEOUT_S)
        if anonymous is None:
            return None  # not answering: ``is_healthy`` already says so
        if anonymous == 200:
            if settings.mlflow_auth:
                return (
                    f"the server on port {settings.mlflow_port} answers without credentials although auth "
                    "is on: it was started insecure (without auth); run `tuneline stack down` then `tuneline stack up`"
                )
            return None
        if anonymous != 401:
            return f"unexpected HTTP {anonymous} from {probe}"
        if not (settings.mlflow_username and settings.mlflow_password):
            return (
                "the server requires credentials (basic auth): set TUNELINE_MLFLOW_USERNAME and "
                "TUNELINE_MLFLOW_PASSWORD"
            )
        credentials = (settings.mlflow_username, settings.mlflow_password.get_secret_value())
        code = http_status(probe, credentials, timeout_s=_PROBE_TIMEOUT_S)
        if code is None:
            return f"no answer to an authenticated request within {_PROBE_TIMEOUT_S:.0f} s"
        if code != 200:
            return (
                f"the server refused the credentials of user {settings.mlflow_username!r} (HTTP {code}): "
                "TUNELINE_MLFLOW_PASSWORD must be the password that user was created with (for the admin, "
                "the one set on the first `tuneline stack up`, kept in stack.env unless you chose it)"
            )
        return None


def admin_password(settings: Settings) -> str:
    """The password the auth-on server creates its admin with; ``ConfigError`` if unusable."""
    if settings.mlflow_password is None or not settings.mlflow_password.get_secret_value():
        raise ConfigError(
            "mlflow: auth is on but no password is set: export TUNELINE_MLFLOW_PASSWORD (or put it in "
            ".env or your secret store), or let `tuneline stack up` generate one"
        )
    password = settings.mlflow_password.get_secret_value()
    if len(password) < _MIN_PASSWORD_LENGTH:
        # MLflow's own rule; checked here so the message names Tuneline's variable.
        raise ConfigError(
            f"mlflow: TUNELINE_MLFLOW_PASSWORD must have at least {_MIN_PASSWORD_LENGTH} characters"
        )
    return password
