"""Untrusted locations and model files: refused schemes and traversal, safetensors only, no
remote code unless the config asks for it, no pickled Prefect results, SSE on every write."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from pydantic import SecretStr

from tuneline.backends.local.hf_models import (
    load_causal_lm,
    model_config,
    resolve_model_dir,
    select_placement,
)
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import LocalTuneConfig
from tuneline.data.sources import resolve_source
from tuneline.data.versions import check_dataset_name, version_uri
from tuneline.errors import BackendError, ConfigError, DataError
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore, S3Uri

pytestmark = pytest.mark.faults

MARKER = "tuneline-pwned"


# --- locations --------------------------------------------------------------------------------
BAD_LOCATIONS = [
    "file:///etc/passwd",
    "http://169.254.169.254/latest/meta-data/",
    "https://example.com/model",
    "ftp://example.com/data.jsonl",
    "hf://meta-llama/Llama-3",
    "S3://bucket/upper-case-scheme",
]


@pytest.mark.parametrize("location", BAD_LOCATIONS, ids=lambda s: s.split(":")[0])
def test_model_locations_outside_local_paths_and_s3_are_refused(location: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported location"):
        resolve_model_dir(location, None, tmp_path)


@pytest.mark.parametrize("location", BAD_LOCATIONS, ids=lambda s: s.split(":")[0])
def test_data_sources_outside_local_paths_and_s3_are_refused(location: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unsupported location"):
        resolve_source(location, None, tmp_path)


@pytest.mark.parametrize(
    "uri",
    ["s3://b/datasets/../audit/x", "s3://b/./x", "s3://b/a/../../etc", "s3:///no-bucket", "s3:/b/x"],
    ids=["dotdot", "dot", "double-dotdot", "no-bucket", "one-slash"],
)
def test_s3_uris_with_traversal_or_no_bucket_are_refused(uri: str) -> None:
    with pytest.raises(ConfigError):
        S3Uri.parse(uri)


@pytest.mark.parametrize(
    "name", ["../audit", "a/b", "..", ".hidden", "", "x" * 64, "name with space", "ü"], ids=repr
)
def test_dataset_names_cannot_leave_their_prefix(name: str) -> None:
    with pytest.raises(DataError):
        check_dataset_name(name)


def test_a_dataset_version_stays_under_datasets(make_store: Callable[..., ObjectStore]) -> None:
    uri = version_uri(make_store(), "tickets", "abc123")
    assert S3Uri.parse(uri).key == "datasets/tickets/abc123/"


# --- model files ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


class _Pwn:
    """Unpickling this writes a marker file: proof that pickle ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "pickle ran code"))


def test_pickled_weights_beside_safetensors_are_never_unpickled(tiny_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    marker = tmp_path / MARKER
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Pwn(marker)))
    model = load_causal_lm(model_dir, select_placement("cpu", "fp32"))
    assert model.num_parameters() > 0
    assert not marker.exists()


def test_a_model_with_only_pickled_weights_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    for weights in model_dir.glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / MARKER
    (model_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Pwn(marker)))
    with pytest.raises(BackendError, match="no .safetensors weights"):
        load_causal_lm(model_dir, select_placement("cpu", "fp32"))
    assert not marker.exists()


def test_remote_code_in_a_model_does_not_run_unless_the_config_trusts_it(tiny_model: Path, tmp_path: Path) -> None:
    import json

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model, model_dir)
    marker = tmp_path / MARKER
    (model_dir / "evil_config.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('remote code ran')\n"
        "from transformers import LlamaConfig\nclass EvilConfig(LlamaConfig):\n    model_type = 'llama'\n"
    )
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil_config.EvilConfig"}
    (model_dir / "config.json").write_text(json.dumps(config))

    assert LocalTuneConfig(base_model=str(model_dir)).trust_remote_code is False
    try:
        model_config(model_dir, trust_remote_code=False)
    except (ValueError, OSError):
        pass  # refusing outright is fine too; running the code is not
    assert not marker.exists()


def test_prefect_never_persists_our_task_or_flow_results_with_pickle() -> None:
    import importlib
    import pkgutil

    from prefect import Flow, Task

    import flows
    import tasks

    modules = [
        importlib.import_module(f"{package.__name__}.{info.name}")
        for package in (tasks, flows)
        for info in pkgutil.iter_modules(package.__path__)
    ]
    runnables = {
        id(obj): obj for module in modules for obj in vars(module).values() if isinstance(obj, (Flow, Task))
    }.values()
    assert len(runnables) >= 10
    for runnable in runnables:
        serializer = getattr(runnable, "result_serializer", None)
        assert runnable.persist_result is not True or serializer in ("json", "pydantic"), runnable.name


# --- S3 server-side encryption ------------------------------------------------------------------
@pytest.fixture
def make_store() -> Callable[..., ObjectStore]:
    def make(sse: str | None = None) -> ObjectStore:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            s3_endpoint_url="http://127.0.0.1:1",
            s3_bucket="tl-sse",
            aws_access_key_id=SecretStr("AKIDEXAMPLE"),
            aws_secret_access_key=SecretStr("not-a-real-secret"),
            s3_server_side_encryption=sse,
        )
        client = boto3.client(
            "s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x",
            endpoint_url="http://127.0.0.1:1",
        )
        return ObjectStore(settings, client=client)

    return make


@pytest.mark.parametrize("sse", ["aws:kms", "AES256"])
def test_every_write_requests_server_side_encryption_when_configured(
    make_store: Callable[..., ObjectStore], sse: str
) -> None:
    store = make_store(sse)
    with Stubber(store.client) as stub:
        stub.add_response(
            "put_object", {}, {"Bucket": "tl-sse", "Key": "a/b.txt", "Body": ANY, "ContentType": "text/plain", "ServerSideEncryption": sse}
        )
        stub.add_response(
            "copy_object",
            {},
            {"Bucket": "tl-sse", "Key": "a/c.txt", "CopySource": {"Bucket": "tl-sse", "Key": "a/b.txt"}, "ServerSideEncryption": sse},
        )
        store.put_bytes("s3://tl-sse/a/b.txt", b"x", "text/plain")
        store.copy("s3://tl-sse/a/b.txt", "s3://tl-sse/a/c.txt")
        stub.assert_no_pending_responses()


def test_put_file_passes_server_side_encryption_to_the_upload(
    make_store: Callable[..., ObjectStore], tmp_path: Path
) -> None:
    store = make_store("aws:kms")
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    with Stubber(store.client) as stub:
        stub.add_response("put_object", {}, {"Bucket": "tl-sse", "Key": "f.bin", "Body": ANY, "ChecksumAlgorithm": ANY, "ServerSideEncryption": "aws:kms"})
        store.put_file("s3://tl-sse/f.bin", path)
        stub.assert_no_pending_responses()


def test_no_encryption_header_when_not_configured(make_store: Callable[..., ObjectStore]) -> None:
    store = make_store(None)
    with Stubber(store.client) as stub:
        stub.add_response("put_object", {}, {"Bucket": "tl-sse", "Key": "k", "Body": ANY, "ContentType": "application/octet-stream"})
        store.put_bytes("s3://tl-sse/k", b"x")
        stub.assert_no_pending_responses()
