"""ObjectStore against a real SeaweedFS (the ``s3_settings`` session service), and S3Uri parsing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from tuneline.errors import ConfigError, ServiceUnavailableError
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore, S3Uri, local_path_or_none

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
