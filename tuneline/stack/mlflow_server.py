"""The MLflow tracking server: runs and registry in SQLite, artifacts proxied to the local S3.

Clients talk only HTTP to it (``--artifacts-destination``): they need no S3 credentials, and the
server holds the S3 endpoint and keys in its own environment.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from tuneline.errors import StackError
from tuneline.settings import Settings
from tuneline.stack._service import http_ok, service_dir
from tuneline.stack.seaweedfs import SeaweedFS

__all__ = ["MlflowServer"]


class MlflowServer:
    name = "mlflow"
    # ~20 s seen here on a quiet machine; the first start also migrates the database.
    startup_timeout_s = 180.0

    def url(self, settings: Settings) -> str:
        return f"http://127.0.0.1:{settings.mlflow_port}"

    def _db_path(self, settings: Settings) -> Path:
        return service_dir(settings, "mlflow") / "mlflow.db"

    def command(self, settings: Settings) -> list[str]:
        return [
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
            # One worker: the machine has two cores and the tracking load is light.
            "--workers",
            "1",
            # Clients keep HTTP connections alive; without a bound, shutdown waits for them until
            # ``stop`` escalates to SIGKILL.
            "--uvicorn-opts",
            "--timeout-graceful-shutdown 3",
        ]

    def environment(self, settings: Settings) -> dict[str, str]:
        if not (settings.aws_access_key_id and settings.aws_secret_access_key):
            raise StackError("mlflow: the artifact proxy needs the S3 credentials")
        return {
            "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{settings.s3_port}",
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key.get_secret_value(),
            "AWS_DEFAULT_REGION": settings.aws_region,
        }

    def prepare(self, settings: Settings) -> None:
        if not SeaweedFS().is_healthy(settings):
            raise StackError(
                f"mlflow: its artifact store, the local S3 on port {settings.s3_port}, is not running; "
                "start the 's3' service first"
            )
        # Created once up front: concurrent first writers otherwise hit "database is locked".
        sqlite3.connect(self._db_path(settings)).close()

    def is_healthy(self, settings: Settings) -> bool:
        return http_ok(f"{self.url(settings)}/health")

    def after_start(self, settings: Settings) -> None:
        return None
