"""ObjectStore against a real SeaweedFS (the ``s3_settings`` session service), and S3Uri parsing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws
from pydantic import SecretStr, ValidationError

from tuneline.errors import ConfigError, ServiceUnavailableError
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore, S3Uri, local_path_or_none, sse_request_args

service = pytest.mark.service


# --- S3Uri -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [
        ("s3://b/a/b.txt", "b", "a/b.txt"),
        ("s3://b", "b", ""),
        ("s3://b/prefix/", "b", "prefix/"),
    ],
    ids=["key", "bucket-only", "trailing-slash"],
)
def test_s3uri_parse_splits_bucket_and_key(uri: str, bucket: str, key: str) -> None:
    parsed = S3Uri.parse(uri)
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert str(parsed) == f"s3://{bucket}/{key}"


@pytest.mark.parametrize(
    "uri",
    [
        "s3://b/a/../etc/passwd",
        "s3://b/../x",
        "s3://b/a/./x",
        "http://b/a",
        "file:///etc/passwd",
        "/local/path",
        "s3:///key-without-bucket",
    ],
    ids=["dotdot-inside", "dotdot-first", "dot", "http", "file", "path", "no-bucket"],
)
def test_s3uri_parse_rejects_traversal_and_other_schemes(uri: str) -> None:
    with pytest.raises(ConfigError):
        S3Uri.parse(uri)


def test_s3uri_join_strips_duplicate_slashes() -> None:
    assert str(S3Uri.parse("s3://b/base/").join("/a/", "b.txt")) == "s3://b/base/a/b.txt"


@pytest.mark.parametrize(
    ("source", "expected"),
    [("s3://b/k", None), ("data/x.jsonl", Path("data/x.jsonl"))],
    ids=["s3", "relative-path"],
)
def test_local_path_or_none(source: str, expected: Path | None) -> None:
    assert local_path_or_none(source) == expected


def test_local_path_or_none_refuses_other_urls() -> None:
    with pytest.raises(ConfigError, match="unsupported location"):
        local_path_or_none("https://example.com/data.jsonl")


# --- round trips against SeaweedFS -------------------------------------------------------------
@service
def test_put_get_exists_roundtrip(object_store: ObjectStore, s3_prefix: Callable[[str], str]) -> None:
    uri = f"{s3_prefix('rt')}/nested/obj.bin"
    payload = bytes(range(256)) * 10
    assert not object_store.exists(uri)
    assert object_store.put_bytes(uri, payload) == uri
    assert object_store.exists(uri)
    assert object_store.get_bytes(uri) == payload


@service
def test_list_keys_and_delete_prefix(object_store: ObjectStore, s3_prefix: Callable[[str], str]) -> None:
    prefix = s3_prefix("list")
    sibling = prefix + "-sibling"
    for name in ("a.txt", "sub/b.txt", "sub/deeper/c.txt"):
        object_store.put_bytes(f"{prefix}/{name}", name.encode())
    object_store.put_bytes(f"{sibling}/keep.txt", b"keep")
    key = S3Uri.parse(prefix).key
    assert sorted(object_store.list_keys(prefix + "/")) == [
        f"{key}/a.txt",
        f"{key}/sub/b.txt",
        f"{key}/sub/deeper/c.txt",
    ]

    assert object_store.delete_prefix(prefix + "/") == 3
    assert list(object_store.list_keys(prefix + "/")) == []
    assert object_store.get_bytes(f"{sibling}/keep.txt") == b"keep"


@service
def test_put_dir_download_prefix_roundtrip(
    object_store: ObjectStore, s3_prefix: Callable[[str], str], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "adapter").mkdir(parents=True)
    (src / "adapter" / "weights.safetensors").write_bytes(b"\x00\x01" * 1000)
    (src / "config.json").write_text('{"r": 8}')
    prefix = s3_prefix("dir")
    written = object_store.put_dir(prefix, src)
    assert written == [f"{prefix}/adapter/weights.safetensors", f"{prefix}/config.json"]

    dst = object_store.download_prefix(prefix, tmp_path / "dst")
    assert (dst / "adapter" / "weights.safetensors").read_bytes() == b"\x00\x01" * 1000
    assert (dst / "config.json").read_text() == '{"r": 8}'


@service
def test_download_prefix_ignores_sibling_prefixes(
    object_store: ObjectStore, s3_prefix: Callable[[str], str], tmp_path: Path
) -> None:
    # "model" must not pick up "model2/...": S3 prefixes are strings, not folders.
    prefix = s3_prefix("model")
    object_store.put_bytes(f"{prefix}/a.txt", b"mine")
    object_store.put_bytes(f"{prefix}2/b.txt", b"not mine")
    dst = object_store.download_prefix(prefix, tmp_path / "dst")
    assert sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()) == ["a.txt"]


@service
def test_copy_keeps_source(object_store: ObjectStore, s3_prefix: Callable[[str], str]) -> None:
    prefix = s3_prefix("copy")
    object_store.put_bytes(f"{prefix}/src", b"data")
    object_store.copy(f"{prefix}/src", f"{prefix}/dst")
    assert object_store.get_bytes(f"{prefix}/dst") == b"data"
    assert object_store.exists(f"{prefix}/src")


@service
def test_seaweedfs_refuses_dotdot_keys(object_store: ObjectStore, s3_settings: Settings) -> None:
    # Defence in depth under S3Uri.parse: the local S3 itself rejects traversal keys.
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        object_store.client.put_object(Bucket=s3_settings.s3_bucket, Key="x/../../evil.txt", Body=b"x")


@pytest.fixture
def aws_like_store(monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """An ObjectStore on moto's AWS S3 emulation, which (like AWS) accepts '..' inside keys."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        settings = Settings(_env_file=None, s3_endpoint_url="", s3_bucket="aws-bucket")  # type: ignore[call-arg]
        store = ObjectStore(settings, client=boto3.client("s3", region_name="us-east-1"))
        store.ensure_bucket()
        yield store


def test_download_prefix_refuses_keys_escaping_the_folder(
    aws_like_store: ObjectStore, tmp_path: Path
) -> None:
    aws_like_store.client.put_object(Bucket="aws-bucket", Key="p/../../escaped.txt", Body=b"x")
    with pytest.raises(ConfigError, match="escape"):
        aws_like_store.download_prefix("s3://aws-bucket/p", tmp_path / "dst")
    assert not (tmp_path / "escaped.txt").exists()


def test_unreachable_endpoint_names_the_service(make_stack_settings: Callable[..., Settings]) -> None:
    # Nothing listens on the fresh settings' S3 port.
    settings = make_stack_settings(aws_access_key_id="k", aws_secret_access_key="s")
    store = ObjectStore(settings)
    with pytest.raises(ServiceUnavailableError, match="S3"):
        store.get_bytes(f"s3://{settings.s3_bucket}/x")


# --- server-side encryption: the request parameters, checked against the real S3 model ----------
def _sse_store(endpoint: str | None, **sse: object) -> ObjectStore:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        s3_endpoint_url=endpoint or "",
        s3_bucket="tl-sse",
        aws_access_key_id=SecretStr("AKIDEXAMPLE"),
        aws_secret_access_key=SecretStr("not-a-real-secret"),
        **sse,
    )
    # A client that never reaches the network: the Stubber answers (and validates) every call.
    client = boto3.client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="x",
        endpoint_url=endpoint or "https://s3.us-east-1.amazonaws.com",
    )
    return ObjectStore(settings, client=client)


@pytest.mark.parametrize(
    ("endpoint", "sse", "expected"),
    [
        (None, {}, {"ServerSideEncryption": "AES256"}),
        ("http://127.0.0.1:1", {}, {}),
        ("http://127.0.0.1:1", {"s3_server_side_encryption": "AES256"}, {"ServerSideEncryption": "AES256"}),
        (None, {"s3_server_side_encryption": "off"}, {}),
        (
            None,
            {"s3_server_side_encryption": "aws:kms", "s3_sse_kms_key_id": "alias/tuneline"},
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "alias/tuneline"},
        ),
    ],
    ids=[
        "aws-default-aes256",
        "custom-endpoint-default-off",
        "custom-endpoint-explicit",
        "aws-off",
        "kms-key",
    ],
)
def test_put_bytes_requests_the_configured_encryption(
    endpoint: str | None, sse: dict[str, object], expected: dict[str, str]
) -> None:
    store = _sse_store(endpoint, **sse)
    assert sse_request_args(store.settings) == expected
    with Stubber(store.client) as stub:
        stub.add_response(
            "put_object",
            {},
            {
                "Bucket": "tl-sse",
                "Key": "k",
                "Body": ANY,
                "ContentType": "application/octet-stream",
                **expected,
            },
        )
        store.put_bytes("s3://tl-sse/k", b"x")
        stub.assert_no_pending_responses()


def test_multipart_upload_requests_encryption_when_it_starts(tmp_path: Path) -> None:
    # Above boto3's 8 MiB threshold upload_file goes multipart: SSE belongs on CreateMultipartUpload.
    store = _sse_store(None, s3_server_side_encryption="aws:kms", s3_sse_kms_key_id="alias/tuneline")
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0" * (8 * 1024 * 1024 + 1))
    with Stubber(store.client) as stub:
        stub.add_response(
            "create_multipart_upload",
            {"UploadId": "u1"},
            {
                "Bucket": "tl-sse",
                "Key": "m/weights.bin",
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": "alias/tuneline",
                "ChecksumAlgorithm": ANY,
            },
        )
        # Parts may go out in either order from the transfer threads: match any parameters.
        stub.add_response("upload_part", {"ETag": '"e1"'})
        stub.add_response("upload_part", {"ETag": '"e2"'})
        stub.add_response("complete_multipart_upload", {})
        store.put_file("s3://tl-sse/m/weights.bin", path)
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    "sse",
    [
        {"s3_server_side_encryption": "AES256", "s3_sse_kms_key_id": "alias/k"},
        {"s3_server_side_encryption": "off", "s3_sse_kms_key_id": "alias/k"},
    ],
    ids=["key-with-aes256", "key-with-off"],
)
def test_a_kms_key_without_kms_encryption_is_refused(sse: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="TUNELINE_S3_SERVER_SIDE_ENCRYPTION=aws:kms"):
        _sse_store(None, **sse)


def test_unknown_encryption_mode_is_rejected_by_settings() -> None:
    with pytest.raises(ValidationError, match="s3_server_side_encryption"):
        Settings(_env_file=None, s3_server_side_encryption="rot13")  # type: ignore[call-arg]


@service
def test_seaweedfs_stores_what_an_explicitly_encrypted_write_sends(
    s3_settings: Settings, s3_prefix: Callable[[str], str]
) -> None:
    # SeaweedFS implements SSE-S3: an operator may turn it on for the local stack too.
    store = ObjectStore(s3_settings.model_copy(update={"s3_server_side_encryption": "AES256"}))
    uri = f"{s3_prefix('sse')}/obj.bin"
    store.put_bytes(uri, b"private")
    loc = S3Uri.parse(uri)
    head = store.client.head_object(Bucket=loc.bucket, Key=loc.key)
    assert head.get("ServerSideEncryption") == "AES256"
    assert store.get_bytes(uri) == b"private"
