"""The local stack against real processes: up/status/down, credentials, failures, S3 access."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import psutil
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from pydantic import SecretStr

from tuneline import stack
from tuneline.errors import ConfigError, StackError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.stack._service import http_status
from tuneline.stack.seaweedfs import SeaweedFS
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


@pytest.fixture
def bare_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's shell in a fresh folder (returned) with no TUNELINE_* variables exported."""
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("TUNELINE_")]:
        monkeypatch.delenv(var)
    return tmp_path


def test_settings_read_stack_env_from_the_default_home(
    make_stack_settings: Callable[..., Settings], bare_shell: Path
) -> None:
    # ``tuneline stack up`` then any command with no exports: Settings() finds the credentials.
    settings = make_stack_settings(home=Path(".tuneline"))
    with_creds = stack.with_stack_credentials(settings, create=True)
    fresh = Settings()
    assert fresh.aws_access_key_id == with_creds.aws_access_key_id
    assert fresh.aws_secret_access_key == with_creds.aws_secret_access_key


def test_settings_read_stack_env_from_the_home_tuneline_home_names(
    make_stack_settings: Callable[..., Settings], bare_shell: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # ``TUNELINE_HOME=... tuneline stack up`` then a command with the same TUNELINE_HOME (and one
    # that names the home in .env): the credentials are that home's, not the default home's.
    tmp_path = bare_shell
    stack.with_stack_credentials(make_stack_settings(home=Path(".tuneline")), create=True)
    elsewhere = stack.with_stack_credentials(make_stack_settings(home=tmp_path / "elsewhere"), create=True)
    assert elsewhere.aws_access_key_id != Settings().aws_access_key_id  # the default home's own

    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "elsewhere"))
    assert Settings().aws_access_key_id == elsewhere.aws_access_key_id
    assert Settings().prefect_api_auth_string == elsewhere.prefect_api_auth_string

    monkeypatch.delenv("TUNELINE_HOME")
    (tmp_path / ".env").write_text(f"TUNELINE_HOME={tmp_path / 'elsewhere'}\n")
    assert Settings().aws_access_key_id == elsewhere.aws_access_key_id


def test_a_stack_on_other_ports_is_reached_there(bare_shell: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What `stack up` advises when a port is taken: the clients follow the ports, not the defaults.
    for var, port in (("S3", 17433), ("MLFLOW", 15055), ("PREFECT", 14211)):
        monkeypatch.setenv(f"TUNELINE_{var}_PORT", str(port))
    settings = Settings()
    assert settings.s3_endpoint_url == "http://127.0.0.1:17433"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:15055"
    assert settings.prefect_api_url == "http://127.0.0.1:14211/api"
    assert settings.as_env()["TUNELINE_PREFECT_API_URL"] == "http://127.0.0.1:14211/api"
    monkeypatch.setenv("TUNELINE_PREFECT_API_URL", "http://prefect.internal:4200/api")  # a given URL wins
    assert Settings().prefect_api_url == "http://prefect.internal:4200/api"


def test_settings_credentials_win_over_stack_env(make_stack_settings: Callable[..., Settings]) -> None:
    settings = make_stack_settings()
    stack.with_stack_credentials(settings, create=True)
    mine = settings.model_copy(update={"aws_access_key_id": "MINE", "aws_secret_access_key": "SECRET"})
    kept = stack.with_stack_credentials(mine, create=True)
    assert (kept.aws_access_key_id, kept.aws_secret_access_key) == (mine.aws_access_key_id, mine.aws_secret_access_key)
    # The rest still comes from stack.env: the same audit key and Prefect auth string as before.
    recorded = stack.with_stack_credentials(settings)
    assert kept.audit_aws_access_key_id == recorded.audit_aws_access_key_id is not None
    assert kept.prefect_api_auth_string == recorded.prefect_api_auth_string is not None


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
def test_prefect_server_requires_its_generated_auth_string_and_the_ui_asks_for_it(fresh_settings: Settings) -> None:
    prefect = _by_name(stack.up(fresh_settings, services=("prefect",)))["prefect"]
    assert prefect.healthy and prefect.pid is not None and prefect.auth
    settings = stack.with_stack_credentials(fresh_settings)
    assert settings.prefect_api_auth_string is not None
    auth_string = settings.prefect_api_auth_string.get_secret_value()
    assert f"TUNELINE_PREFECT_API_AUTH_STRING={auth_string}" in stack.stack_env_path(settings).read_text()
    user, _, password = auth_string.partition(":")
    api = fresh_settings.prefect_api_url
    # Anyone without it: refused, reads and the resume of a paused run alike.
    assert http_status(f"{api}/admin/version") == 401
    assert http_status(f"{api}/admin/version", (user, "wrong")) == 401
    resume = urllib.request.Request(
        f"{api}/flow_runs/00000000-0000-0000-0000-000000000000/resume",
        data=json.dumps({"run_input": {"decision": "approve", "reviewer": "alice"}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(resume, timeout=10)
    assert info.value.code == 401
    assert http_status(f"{api}/admin/version", (user, password)) == 200
    assert http_status(f"{api}/health") == 200  # health checks need none
    # The UI asks the server where the API is (on a non-default port it must not say :4200), and
    # is told to show its login page.
    with urllib.request.urlopen(f"{fresh_settings.prefect_ui_url}/ui-settings", timeout=10) as response:
        ui_settings = json.load(response)
    assert (ui_settings["api_url"], ui_settings["auth"]) == (fresh_settings.prefect_api_url, "BASIC")
    # The auth string reaches Prefect clients under Prefect's own name.
    assert settings.prefect_env()["PREFECT_API_AUTH_STRING"] == auth_string
    wrong = settings.model_copy(update={"prefect_api_auth_string": SecretStr("tuneline:wrong")})
    assert "refused TUNELINE_PREFECT_API_AUTH_STRING" in (_by_name(stack.status(wrong))["prefect"].problem or "")
    assert not _by_name(stack.down(fresh_settings, services=("prefect",)))["prefect"].healthy


def test_mlflow_refuses_to_start_without_its_artifact_store(fresh_settings: Settings) -> None:
    with pytest.raises(StackError, match="mlflow: its artifact store"):
        stack.up(fresh_settings, services=("mlflow",))
    assert not _by_name(stack.status(fresh_settings))["mlflow"].healthy


# --- authenticated by default: S3 identities, SeaweedFS's other ports, Prefect ----------------------
def _client_of(settings: Settings, key_id: str, secret: str):  # noqa: ANN202 - a boto3 client
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def _error_code(call: Callable[[], object]) -> str:
    with pytest.raises(ClientError) as info:
        call()
    return str(info.value.response["Error"]["Code"])


def test_the_pipelines_key_can_neither_overwrite_nor_delete_audit_records(
    s3_settings: Settings, object_store: ObjectStore
) -> None:
    assert s3_settings.audit_aws_access_key_id is not None, "the stack generated no audit writer key"
    bucket = s3_settings.s3_bucket
    # Through the product's own store: writes under audit/ go out with the audit writer's key.
    record = object_store.put_bytes(object_store.uri("audit/m/0001-promotion.jsonl"), b'{"record": 1}\n')
    key = record.removeprefix(f"s3://{bucket}/")
    pipeline = object_store.client  # the pipeline's key, what every other write uses
    assert _error_code(lambda: pipeline.put_object(Bucket=bucket, Key=key, Body=b"forged")) == "AccessDenied"
    assert _error_code(lambda: pipeline.put_object(Bucket=bucket, Key="audit/m/9999-forged.jsonl", Body=b"x")) == "AccessDenied"
    assert _error_code(lambda: pipeline.delete_object(Bucket=bucket, Key=key)) == "AccessDenied"
    assert _error_code(
        lambda: pipeline.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key})
    ) == "AccessDenied"
    # The audit writer adds records but deletes none, and writes nowhere else.
    audit = _client_of(
        s3_settings,
        s3_settings.audit_aws_access_key_id.get_secret_value(),
        s3_settings.audit_aws_secret_access_key.get_secret_value(),  # type: ignore[union-attr]
    )
    assert _error_code(lambda: audit.delete_object(Bucket=bucket, Key=key)) == "AccessDenied"
    assert _error_code(lambda: audit.put_object(Bucket=bucket, Key="datasets/x/forged", Body=b"x")) == "AccessDenied"
    # Untouched, and both identities still read it (the audit log is read by the pipeline).
    assert object_store.get_bytes(record) == b'{"record": 1}\n'
    # The pipeline's key still writes and deletes everywhere else.
    other = object_store.put_bytes(object_store.uri("runs/x/status.json"), b"{}")
    object_store.delete_prefix(other)
    assert not object_store.exists(other)


def test_the_filer_and_volume_ports_refuse_unsigned_requests(
    s3_settings: Settings, object_store: ObjectStore
) -> None:
    record = object_store.put_bytes(object_store.uri("audit/filer/0001-approval.jsonl"), b'{"by": "alice"}\n')
    filer = f"http://127.0.0.1:{s3_settings.weed_filer_port}/buckets/{s3_settings.s3_bucket}/audit/filer/"
    listing = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Accept: application/json", filer],
        capture_output=True, text=True, timeout=30, check=False,
    )
    read = subprocess.run(
        ["curl", "-s", "-w", "\n%{http_code}", f"{filer}0001-approval.jsonl"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    write = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-F", "file=@/etc/hostname", f"{filer}0002-forged.jsonl"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert (listing.stdout, read.stdout.splitlines()[-1], write.stdout) == ("401", "401", "401")
    assert "alice" not in read.stdout
    assert sorted(object_store.list_keys(object_store.uri("audit/filer/"))) == [
        record.removeprefix(f"s3://{s3_settings.s3_bucket}/")
    ]
    # The volume server's UI is off too (it would list volumes and their files).
    assert _port_open(s3_settings.weed_volume_port)
    ui = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{s3_settings.weed_volume_port}/ui/index.html"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert ui.stdout != "200"
    assert {s.name: s for s in stack.status(s3_settings)}["s3"].auth


# --- S3 Object Lock: audit records are locked versions ---------------------------------------------
def _admin_key(settings: Settings) -> tuple[str, str]:
    """The stack admin's key (the one identity with every S3 permission), from identities.json."""
    identities = json.loads(SeaweedFS().identities_path(settings).read_text())["identities"]
    (admin,) = [i for i in identities if i["actions"] == ["Admin"]]
    return admin["credentials"][0]["accessKey"], admin["credentials"][0]["secretKey"]


def _admin_of(settings: Settings):  # noqa: ANN202 - a boto3 client
    return _client_of(settings, *_admin_key(settings))


def _versions(client, bucket: str, key: str) -> list[str]:  # noqa: ANN001
    listing = client.list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


@pytest.mark.parametrize("mode", ["GOVERNANCE", "COMPLIANCE"])
def test_audit_records_are_locked_versions_no_stack_identity_can_delete(
    s3_settings: Settings, mode: str
) -> None:
    settings = s3_settings.model_copy(update={"audit_retention_mode": mode, "audit_retention_days": 2})
    store = ObjectStore(settings)
    bucket, admin = settings.s3_bucket, _admin_of(settings)
    assert store.audit_object_lock(), "the stack did not turn on Object Lock for its bucket"
    before = datetime.now(UTC).replace(microsecond=0)  # S3 keeps whole seconds
    uri = store.put_bytes(store.uri(f"audit/lock-{mode.lower()}/0000000001-approval.jsonl"), b'{"approved": true}\n')
    key = uri.removeprefix(f"s3://{bucket}/")
    (version,) = _versions(admin, bucket, key)
    retention = admin.get_object_retention(Bucket=bucket, Key=key, VersionId=version)["Retention"]
    assert retention["Mode"] == mode
    assert before + timedelta(days=2) <= retention["RetainUntilDate"] <= datetime.now(UTC) + timedelta(days=2)
    # Only audit records carry one: the bucket has no default retention.
    other = store.put_bytes(store.uri("runs/lock/status.json"), b"{}")
    assert _error_code(
        lambda: admin.get_object_retention(Bucket=bucket, Key=other.removeprefix(f"s3://{bucket}/"))
    ) == "ObjectLockConfigurationNotFoundError"

    audit = _client_of(
        settings,
        settings.audit_aws_access_key_id.get_secret_value(),  # type: ignore[union-attr]
        settings.audit_aws_secret_access_key.get_secret_value(),  # type: ignore[union-attr]
    )
    shorter = {"Mode": mode, "RetainUntilDate": datetime.now(UTC) + timedelta(hours=1)}
    expire_audit = {"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {"Prefix": "audit/"}, "Expiration": {"Days": 1}}]}
    for client in (store.client, audit):  # the pipeline's key, the audit writer's
        assert _error_code(lambda c=client: c.delete_object(Bucket=bucket, Key=key, VersionId=version)) == "AccessDenied"
        assert _error_code(
            lambda c=client: c.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        ) == "AccessDenied"
        assert _error_code(
            lambda c=client: c.put_object_retention(Bucket=bucket, Key=key, VersionId=version, Retention=shorter)
        ) == "AccessDenied"
        result = client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": key, "VersionId": version}]})
        assert [e["Code"] for e in result.get("Errors", [])] == ["AccessDenied"]
        # Nor may they change what keeps the versions: versioning, lifecycle, the bucket itself.
        assert _error_code(
            lambda c=client: c.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
        ) == "AccessDenied"
        assert _error_code(
            lambda c=client: c.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration=expire_audit)
        ) == "AccessDenied"
        assert _error_code(lambda c=client: c.delete_bucket(Bucket=bucket)) == "AccessDenied"
    assert _error_code(lambda: store.client.put_object(Bucket=bucket, Key=key, Body=b"forged")) == "AccessDenied"

    # The lock holds where no policy denies: the admin, allowed everything else, cannot delete the
    # version either; only GOVERNANCE yields, and only to an explicit bypass.
    assert _error_code(lambda: admin.delete_object(Bucket=bucket, Key=key, VersionId=version)) == "AccessDenied"
    assert _error_code(
        lambda: admin.put_object_retention(Bucket=bucket, Key=key, VersionId=version, Retention=shorter)
    ) == "AccessDenied"
    # An overwrite (the audit writer may put) is a new version beside the locked one, not instead of it.
    store.put_bytes(uri, b'{"approved": false}\n')
    assert len(_versions(admin, bucket, key)) == 2
    assert admin.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read() == b'{"approved": true}\n'
    if mode == "COMPLIANCE":
        assert _error_code(
            lambda: admin.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        ) == "AccessDenied"
        assert version in _versions(admin, bucket, key)
    else:
        admin.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
        assert version not in _versions(admin, bucket, key)


def test_audit_writes_carry_a_retention_only_where_the_bucket_has_object_lock(s3_settings: Settings) -> None:
    # A bucket of the same server without Object Lock (as an unlocked AWS bucket): the same code
    # path writes plainly, asks once, and locks once the bucket has it.
    admin = _admin_of(s3_settings)
    bucket = f"{s3_settings.s3_bucket}-plain"
    admin.create_bucket(Bucket=bucket)
    key_id, secret = _admin_key(s3_settings)  # the admin's key signs for both identities here
    as_admin = {
        "aws_access_key_id": SecretStr(key_id),
        "aws_secret_access_key": SecretStr(secret),
        "audit_aws_access_key_id": SecretStr(key_id),
        "audit_aws_secret_access_key": SecretStr(secret),
        "s3_bucket": bucket,
    }
    plain = ObjectStore(s3_settings.model_copy(update=as_admin))
    assert not plain.audit_object_lock()
    plain.put_bytes(plain.uri("audit/m/0000000001-approval.jsonl"), b"{}\n")  # a retention would be refused
    assert _error_code(  # SeaweedFS's answer for a bucket without Object Lock
        lambda: admin.get_object_retention(Bucket=bucket, Key="audit/m/0000000001-approval.jsonl")
    ) == "InvalidRequest"

    admin.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    admin.put_object_lock_configuration(Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled"})
    locked = ObjectStore(s3_settings.model_copy(update=as_admin))
    locked.put_bytes(locked.uri("audit/m/0000000002-approval.jsonl"), b"{}\n")
    retention = admin.get_object_retention(Bucket=bucket, Key="audit/m/0000000002-approval.jsonl")["Retention"]
    assert retention["Mode"] == s3_settings.audit_retention_mode


def test_status_reports_a_bucket_the_audit_writer_cannot_see_locked(s3_settings: Settings) -> None:
    assert SeaweedFS().check(s3_settings) is None
    # The audit writer of a server started before audit records were locked may not read the lock
    # configuration; here it is refused for a bucket it has no rights on: status says to restart.
    elsewhere = s3_settings.model_copy(update={"s3_bucket": f"{s3_settings.s3_bucket}-elsewhere"})
    assert "tuneline stack down" in (SeaweedFS().check(elsewhere) or "")


def test_weed_listens_only_on_loopback_and_only_on_the_ports_it_was_given(s3_settings: Settings) -> None:
    # Connecting from another address would need one on this machine that is not loopback (none
    # is a target here): the honest equivalent is what weed itself has bound, from the kernel.
    record = _process.running_record(s3_settings.home.resolve(), "s3")
    assert record is not None
    sockets = psutil.Process(record.pid).net_connections(kind="inet")
    listening = {(c.laddr.ip, c.laddr.port) for c in sockets if c.status == psutil.CONN_LISTEN}
    http = {
        s3_settings.s3_port,
        s3_settings.weed_master_port,
        s3_settings.weed_volume_port,
        s3_settings.weed_filer_port,
        s3_settings.weed_admin_port,
    }
    # Each component's gRPC twin is the HTTP port + 10000; no metrics, pprof, WebDAV, Iceberg or
    # Lance listener, nothing on 0.0.0.0 or ::.
    assert listening == {("127.0.0.1", port) for port in http | {p + 10000 for p in http}}
    assert not [c for c in sockets if c.type == socket.SOCK_DGRAM]
