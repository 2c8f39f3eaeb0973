"""The local stack against real processes: up/status/down, credentials, failures, S3 access."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import psutil
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tuneline import stack
from tuneline.errors import ConfigError, StackError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.storage.s3 import ObjectStore

pytestmark = pytest.mark.service


@pytest.fixture
def fresh_settings(make_stack_settings: Callable[..., Settings]) -> Iterator[Settings]:
    """Isolated settings for a stack this test starts; everything it started is stopped after."""
    settings = make_stack_settings()
    yield settings
    stack.down(settings)


def _by_name(statuses: list[stack.ServiceStatus]) -> dict[str, stack.ServiceStatus]:
    return {s.name: s for s in statuses}


def test_up_generates_credentials_reuses_running_services_and_down_stops_them(
    fresh_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert fresh_settings.aws_access_key_id is None
    first = _by_name(stack.up(fresh_settings, services=("s3",)))["s3"]
    assert first.healthy and first.pid is not None and first.startup_s is not None

    # The generated credentials are private to the user and are what a later Settings() reads.
    env_file = stack.stack_env_path(fresh_settings)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    loaded = stack.with_stack_credentials(fresh_settings)
    assert loaded.aws_access_key_id is not None
    assert f"TUNELINE_AWS_ACCESS_KEY_ID={loaded.aws_access_key_id.get_secret_value()}" in env_file.read_text()
    store = ObjectStore(loaded)
    store.put_bytes(f"s3://{loaded.s3_bucket}/hello.txt", b"hi")
    assert store.get_bytes(f"s3://{loaded.s3_bucket}/hello.txt") == b"hi"

    again = _by_name(stack.up(fresh_settings, services=("s3",)))["s3"]
    assert (again.pid, again.healthy, again.startup_s) == (first.pid, True, None)
    assert env_file.read_text().count("TUNELINE_AWS_SECRET_ACCESS_KEY=") == 1

    now = _by_name(stack.status(fresh_settings))
    assert now["s3"].healthy and now["s3"].pid == first.pid
    assert not now["mlflow"].healthy and now["mlflow"].pid is None
    assert not now["prefect"].healthy

    after = _by_name(stack.down(fresh_settings))
    assert not after["s3"].healthy and after["s3"].pid is None
    assert not psutil.pid_exists(first.pid) or psutil.Process(first.pid).status() == psutil.STATUS_ZOMBIE
    assert not _process.pid_path(fresh_settings.home.resolve(), "s3").exists()


def test_settings_read_stack_env_from_the_default_home(
    make_stack_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``tuneline stack up`` then any command with no exports: Settings() finds the credentials.
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("TUNELINE_")]:
        monkeypatch.delenv(var)
    settings = make_stack_settings(home=Path(".tuneline"))
    with_creds = stack.with_stack_credentials(settings, create=True)
    fresh = Settings()
    assert fresh.aws_access_key_id == with_creds.aws_access_key_id
    assert fresh.aws_secret_access_key == with_creds.aws_secret_access_key


def test_settings_credentials_win_over_stack_env(make_stack_settings: Callable[..., Settings]) -> None:
    settings = make_stack_settings()
    stack.with_stack_credentials(settings, create=True)
    mine = settings.model_copy(update={"aws_access_key_id": "MINE", "aws_secret_access_key": "SECRET"})
    assert stack.with_stack_credentials(mine, create=True) is mine


def test_anonymous_and_wrong_key_s3_requests_are_refused(
    s3_settings: Settings, object_store: ObjectStore
) -> None:
    uri = object_store.put_bytes(f"s3://{s3_settings.s3_bucket}/private/secret.txt", b"secret")
    key = uri.removeprefix(f"s3://{s3_settings.s3_bucket}/")
    anonymous = boto3.client(
        "s3",
        endpoint_url=s3_settings.s3_endpoint_url,
        region_name="us-east-1",
        config=Config(signature_version=UNSIGNED),
    )
    for call in (
        lambda: anonymous.get_object(Bucket=s3_settings.s3_bucket, Key=key),
        lambda: anonymous.list_objects_v2(Bucket=s3_settings.s3_bucket),
        lambda: anonymous.put_object(Bucket=s3_settings.s3_bucket, Key="anon.txt", Body=b"x"),
    ):
        with pytest.raises(ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "AccessDenied"

    wrong = boto3.client(
        "s3",
        endpoint_url=s3_settings.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=s3_settings.aws_access_key_id.get_secret_value(),  # type: ignore[union-attr]
        aws_secret_access_key="not-the-secret",
    )
    with pytest.raises(ClientError):
        wrong.get_object(Bucket=s3_settings.s3_bucket, Key=key)


def test_busy_port_fails_with_the_service_named_and_its_log_tail(fresh_settings: Settings) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", fresh_settings.s3_port))
        blocker.listen()
        with pytest.raises(StackError) as info:
            stack.up(fresh_settings, services=("s3",))
    message = str(info.value)
    assert message.startswith("s3 exited during startup")
    assert f"port {fresh_settings.s3_port}" in message  # from weed's own log
    assert not _process.pid_path(fresh_settings.home.resolve(), "s3").exists()


def test_another_homes_s3_on_the_port_is_named_not_reused(fresh_settings: Settings, tmp_path: Path) -> None:
    # A second checkout's `stack up` finds the first one's SeaweedFS answering on the same port.
    stack.up(fresh_settings, services=("s3",))
    other = fresh_settings.model_copy(
        update={"home": tmp_path / "other-checkout", "aws_access_key_id": None, "aws_secret_access_key": None}
    )
    with pytest.raises(StackError) as info:
        stack.up(other, services=("s3",))
    message = str(info.value)
    assert f"127.0.0.1:{fresh_settings.s3_port} was not started from {other.home}" in message
    assert "InvalidAccessKeyId" in message and "TUNELINE_S3_PORT" in message
    assert stack.status(fresh_settings)[0].healthy  # the first checkout's server is left alone


def test_unknown_service_is_a_config_error(fresh_settings: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown stack service"):
        stack.up(fresh_settings, services=("s3", "redis"))


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not ours to stop."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "mismatch",
    ["create_time", "argv"],
    ids=["reused-pid", "other-command"],
)
def test_down_never_signals_a_process_it_did_not_start(
    fresh_settings: Settings, bystander: subprocess.Popen[bytes], mismatch: str
) -> None:
    real = psutil.Process(bystander.pid)
    record = {
        "pid": bystander.pid,
        "create_time": real.create_time() - 1000 if mismatch == "create_time" else real.create_time(),
        "argv": real.cmdline() if mismatch == "create_time" else ["/usr/bin/weed", "mini"],
    }
    pid_file = _process.pid_path(fresh_settings.home.resolve(), "s3")
    pid_file.parent.mkdir(parents=True)
    pid_file.write_text(json.dumps(record))

    statuses = _by_name(stack.down(fresh_settings))

    assert bystander.poll() is None, "down() killed a process it did not start"
    assert statuses["s3"].pid is None
    assert not pid_file.exists()  # the stale record is dropped


def test_down_leaves_a_healthy_foreign_service_alone(fresh_settings: Settings) -> None:
    foreign = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(fresh_settings.s3_port), "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _process.wait_healthy(
            fresh_settings.home,
            "foreign",
            _process.ProcessRecord(
                pid=foreign.pid, create_time=psutil.Process(foreign.pid).create_time(), argv=[]
            ),
            lambda: _port_open(fresh_settings.s3_port),
            timeout_s=20,
        )
        stack.down(fresh_settings)
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_prefect_server_serves_api_and_ui_pointing_at_its_own_port(fresh_settings: Settings) -> None:
    prefect = _by_name(stack.up(fresh_settings, services=("prefect",)))["prefect"]
    assert prefect.healthy and prefect.pid is not None
    # The UI asks the server where the API is; on a non-default port it must not say :4200.
    with urllib.request.urlopen(f"{fresh_settings.prefect_ui_url}/ui-settings", timeout=10) as response:
        ui_settings = json.load(response)
    assert ui_settings["api_url"] == fresh_settings.prefect_api_url
    assert not _by_name(stack.down(fresh_settings, services=("prefect",)))["prefect"].healthy


def test_mlflow_refuses_to_start_without_its_artifact_store(fresh_settings: Settings) -> None:
    with pytest.raises(StackError, match="mlflow: its artifact store"):
        stack.up(fresh_settings, services=("mlflow",))
    assert not _by_name(stack.status(fresh_settings))["mlflow"].healthy
