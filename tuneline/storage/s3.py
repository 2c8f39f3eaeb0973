"""S3 object storage through boto3: the same code for SeaweedFS locally and AWS S3.

``ObjectStore`` is the only place Tuneline talks to S3. It knows the bucket, the optional
endpoint, and the server-side-encryption setting, and it validates every URI it is given.

Two identities: the pipeline's key for everything, and, when ``audit_aws_*`` is set (the local
stack generates it), the audit writer's key for writes under ``audit/``. The store's policy lets
the pipeline's key neither put nor delete there, and the audit writer's key write nowhere else and
delete nothing, so a bug or a leaked pipeline key cannot rewrite the audit log.

Where the bucket has S3 Object Lock enabled (asked once per store, with the identity that writes
``audit/``), every write under ``audit/`` also carries a retention: ``audit_retention_mode`` until
``audit_retention_days`` from now. That version can then be deleted by no identity (COMPLIANCE) or
only by one allowed to bypass governance (GOVERNANCE) until the date, whatever the policies say.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from tuneline.errors import ConfigError, ServiceUnavailableError
from tuneline.settings import Settings

__all__ = [
    "AUDIT_PREFIX",
    "ObjectStore",
    "S3Uri",
    "local_path_or_none",
    "make_s3_client",
    "sse_request_args",
]

# Keys written with the audit writer's identity (when one is configured).
AUDIT_PREFIX = "audit/"


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise ConfigError(f"expected an s3:// URI, got {uri!r}")
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ConfigError(f"S3 URI has no bucket: {uri!r}")
        # Split by hand: PurePosixPath drops "." segments, which then slip through.
        if any(part in ("..", ".") for part in key.split("/")):
            raise ConfigError(f"S3 URI must not contain '.' or '..' segments: {uri!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        key = "/".join([self.key.rstrip("/"), *(p.strip("/") for p in parts)]).lstrip("/")
        return S3Uri(self.bucket, key)


def make_s3_client(settings: Settings, audit_writer: bool = False) -> Any:
    """A boto3 S3 client for the configured endpoint (none: AWS) and credentials.

    ``audit_writer``: signed with the audit writer's key (``audit_aws_*``) instead of the pipeline's.
    """
    kwargs: dict[str, Any] = {
        "region_name": settings.aws_region,
        "config": Config(
            retries={"max_attempts": 5, "mode": "adaptive"},
            connect_timeout=5,
            read_timeout=60,
            s3={"addressing_style": "path"} if settings.s3_endpoint_url else {},
        ),
    }
    if settings.s3_endpoint_url:
        kwargs["endpoint_url"] = settings.s3_endpoint_url
    key_id, secret = (
        (settings.audit_aws_access_key_id, settings.audit_aws_secret_access_key)
        if audit_writer
        else (settings.aws_access_key_id, settings.aws_secret_access_key)
    )
    if key_id and secret:
        kwargs["aws_access_key_id"] = key_id.get_secret_value()
        kwargs["aws_secret_access_key"] = secret.get_secret_value()
    return boto3.client("s3", **kwargs)


def sse_request_args(settings: Settings) -> dict[str, str]:
    """The server-side-encryption parameters every write (put, upload, copy) sends.

    Unset means AES256 on AWS S3 and nothing on a custom endpoint: SeaweedFS and other
    S3-compatible stores implement SSE partly or not at all, and one that does not would refuse
    every write. The same parameters go to the MLflow server (``MLFLOW_S3_UPLOAD_EXTRA_ARGS``).
    """
    mode = settings.s3_server_side_encryption
    if mode is None:
        mode = "off" if settings.s3_endpoint_url else "AES256"
    if mode == "off":
        if settings.s3_sse_kms_key_id:
            raise ConfigError(
                "s3_sse_kms_key_id is set but server-side encryption is off: set "
                "TUNELINE_S3_SERVER_SIDE_ENCRYPTION=aws:kms, or unset TUNELINE_S3_SSE_KMS_KEY_ID"
            )
        return {}
    args = {"ServerSideEncryption": mode}
    if settings.s3_sse_kms_key_id:
        if not mode.startswith("aws:kms"):
            raise ConfigError(
                f"s3_sse_kms_key_id needs KMS encryption, but s3_server_side_encryption is {mode!r}: "
                "set TUNELINE_S3_SERVER_SIDE_ENCRYPTION=aws:kms, or unset TUNELINE_S3_SSE_KMS_KEY_ID"
            )
        args["SSEKMSKeyId"] = settings.s3_sse_kms_key_id
    return args


class ObjectStore:
    """Read and write objects in the configured bucket (or any bucket by full URI)."""

    def __init__(self, settings: Settings, client: Any | None = None) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self.client = client or make_s3_client(settings)
        # A client given by the caller (a test's emulator) serves both identities.
        separate = client is None and settings.audit_aws_access_key_id and settings.audit_aws_secret_access_key
        self._audit_client = make_s3_client(settings, audit_writer=True) if separate else self.client
        # Resolved once: a contradictory setting fails here, before any write is attempted.
        self._sse = sse_request_args(settings)
        self._audit_locked: bool | None = None  # asked at the first write under audit/

    def _is_audit(self, loc: S3Uri) -> bool:
        return loc.bucket == self.bucket and loc.key.startswith(AUDIT_PREFIX)

    def _writer(self, loc: S3Uri) -> Any:
        """The client that may write ``loc``: the audit writer's under ``audit/`` of our bucket."""
        return self._audit_client if self._is_audit(loc) else self.client

    def audit_object_lock(self) -> bool:
        """Whether the bucket has S3 Object Lock enabled, so that audit records are written locked."""
        if self._audit_locked is None:
            self._audit_locked = self._bucket_has_object_lock()
        return self._audit_locked

    def _bucket_has_object_lock(self) -> bool:
        try:
            with _service_errors():
                answer = self._audit_client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("ObjectLockConfigurationNotFoundError", "NotImplemented"):
                return False
            if code == "AccessDenied":
                raise ConfigError(
                    f"cannot tell whether bucket {self.bucket!r} has S3 Object Lock (and so whether audit "
                    "records must be written with a retention): the identity that writes audit/ was refused "
                    "s3:GetBucketObjectLockConfiguration. Grant it that and s3:PutObjectRetention on audit/*; "
                    "a local stack started before Tuneline locked audit records needs `tuneline stack down` "
                    "then `tuneline stack up`"
                ) from exc
            raise
        return answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"

    def _retention(self, loc: S3Uri, body: bool) -> dict[str, Any]:
        """Object Lock parameters for a write of ``loc``: a retention for audit records in a locked
        bucket, nothing otherwise. ``body``: the request carries the object (S3 then wants a
        checksum of it with the lock, which the explicit algorithm guarantees)."""
        if not (self._is_audit(loc) and self.audit_object_lock()):
            return {}
        until = datetime.now(UTC) + timedelta(days=self.settings.audit_retention_days)
        args: dict[str, Any] = {
            "ObjectLockMode": self.settings.audit_retention_mode,
            "ObjectLockRetainUntilDate": until,
        }
        if body:
            args["ChecksumAlgorithm"] = "SHA256"
        return args

    # --- URIs ------------------------------------------------------------------------------
    def uri(self, key: str) -> str:
        return str(S3Uri(self.bucket, key.lstrip("/")))

    # --- writes ----------------------------------------------------------------------------
    def _put_extra(self, loc: S3Uri, body: bool = True) -> dict[str, Any]:
        return {**self._sse, **self._retention(loc, body)}

    def put_bytes(self, uri: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        loc = S3Uri.parse(uri)
        extra = self._put_extra(loc)
        with _service_errors():
            self._writer(loc).put_object(Bucket=loc.bucket, Key=loc.key, Body=data, ContentType=content_type, **extra)
        return uri

    def put_file(self, uri: str, path: Path) -> str:
        loc = S3Uri.parse(uri)
        extra = self._put_extra(loc)
        with _service_errors():
            self._writer(loc).upload_file(str(path), loc.bucket, loc.key, ExtraArgs=extra or None)
        return uri

    def put_dir(self, prefix_uri: str, directory: Path) -> list[str]:
        """Upload every file below ``directory`` under ``prefix_uri``, keeping relative paths."""
        base = S3Uri.parse(prefix_uri)
        written = []
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            written.append(self.put_file(str(base.join(path.relative_to(directory).as_posix())), path))
        return written

    def copy(self, src_uri: str, dst_uri: str) -> None:
        src, dst = S3Uri.parse(src_uri), S3Uri.parse(dst_uri)
        extra = self._put_extra(dst, body=False)
        with _service_errors():
            self._writer(dst).copy_object(
                Bucket=dst.bucket, Key=dst.key, CopySource={"Bucket": src.bucket, "Key": src.key}, **extra
            )

    def delete_prefix(self, prefix_uri: str) -> int:
        loc = S3Uri.parse(prefix_uri)
        keys = [{"Key": k} for k in self.list_keys(prefix_uri)]
        with _service_errors():
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=loc.bucket, Delete={"Objects": keys[start : start + 1000]})
        return len(keys)

    # --- reads -----------------------------------------------------------------------------
    def get_bytes(self, uri: str) -> bytes:
        loc = S3Uri.parse(uri)
        with _service_errors():
            return self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()

    def download_file(self, uri: str, path: Path) -> Path:
        loc = S3Uri.parse(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        with _service_errors():
            self.client.download_file(loc.bucket, loc.key, str(path))
        return path

    def download_prefix(self, prefix_uri: str, directory: Path) -> Path:
        """Mirror every object under ``prefix_uri`` into ``directory``; refuses keys escaping it."""
        base = S3Uri.parse(prefix_uri)
        root = directory.resolve()
        prefix = base.key.rstrip("/") + "/" if base.key else ""
        # List "<prefix>/" rather than "<prefix>": the latter also matches "<prefix>2/...".
        for key in self.list_keys(str(S3Uri(base.bucket, prefix))):
            target = (root / key[len(prefix) :]).resolve()
            if not target.is_relative_to(root):
                raise ConfigError(f"object key {key!r} would escape {root}")
            self.download_file(str(S3Uri(base.bucket, key)), target)
        return directory

    def exists(self, uri: str) -> bool:
        loc = S3Uri.parse(uri)
        try:
            self.client.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        except (EndpointConnectionError, BotoCoreError) as exc:
            raise ServiceUnavailableError("S3", str(exc)) from exc

    def list_keys(self, prefix_uri: str) -> Iterator[str]:
        for key, _etag, _size in self.list_objects(prefix_uri):
            yield key

    def list_objects(self, prefix_uri: str) -> Iterator[tuple[str, str, int]]:
        """(key, ETag, size) of every object under the prefix: enough to tell content changed."""
        loc = S3Uri.parse(prefix_uri)
        with _service_errors():
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=loc.bucket, Prefix=loc.key):
                for obj in page.get("Contents", []):
                    yield obj["Key"], obj.get("ETag", "").strip('"'), int(obj.get("Size", 0))

    def ensure_bucket(self) -> None:
        with _service_errors():
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError:
                self.client.create_bucket(Bucket=self.bucket)


class _service_errors:
    """Turn connection failures into ``ServiceUnavailableError('S3', ...)`` naming the service."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if (
            exc is not None
            and isinstance(exc, (EndpointConnectionError, BotoCoreError))
            and not isinstance(exc, ClientError)
        ):
            raise ServiceUnavailableError("S3", str(exc)) from exc
        return False


def local_path_or_none(source: str) -> Path | None:
    """``source`` as a local path, or None for s3:// sources; refuses other URL schemes."""
    if source.startswith("s3://"):
        return None
    if "://" in source:
        raise ConfigError(f"unsupported location {source!r}: use a local path or s3://bucket/prefix")
    return Path(os.path.expanduser(source))
