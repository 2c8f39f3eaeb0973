"""MLflow with basic auth (on by default in ``tuneline stack up``) against a real server.

One auth-on MLflow server for the module, beside the session's SeaweedFS (its artifact store), in
a home of its own so that its recorded state (stack.env) is its own.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import mlflow
import pytest
from pydantic import SecretStr

from tuneline import stack
from tuneline.errors import ConfigError
from tuneline.settings import Settings
from tuneline.stack import _process
from tuneline.stack._service import http_status
from tuneline.stack.mlflow_server import MlflowServer
from tuneline.stack.ports import free_port
from tuneline.storage.tracking import configure_mlflow

PROBE = "/api/2.0/mlflow/experiments/search?max_results=1"


@pytest.fixture(scope="module")
def auth_mlflow(s3_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    port = free_port()
    settings = s3_settings.model_copy(
        update={
            "home": tmp_path_factory.mktemp("auth-stack"),
            "mlflow_port": port,
            "mlflow_tracking_uri": f"http://127.0.0.1:{port}",
            "mlflow_auth": True,
            "mlflow_username": "tl-admin",
            "mlflow_password": SecretStr("tlauthpw" + secrets.token_hex(12)),
        }
    )
    try:
        stack.up(settings, services=("mlflow",))
        yield settings
    finally:
        stack.down(settings, services=("mlflow",))


@pytest.fixture
def mlflow_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Lets a test call ``configure_mlflow`` (which sets MLflow's global URI and variables) and undoes it."""
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(var, "")  # recorded, so that teardown restores the original state
    previous = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(previous)


def _auth(settings: Settings) -> tuple[str, str]:
    assert settings.mlflow_username and settings.mlflow_password
    return settings.mlflow_username, settings.mlflow_password.get_secret_value()


@pytest.mark.slow
@pytest.mark.service
def test_auth_on_mlflow_refuses_anonymous_and_serves_the_configured_admin(
    auth_mlflow: Settings, mlflow_env: None, tmp_path: Path
) -> None:
    url = auth_mlflow.mlflow_tracking_uri
    assert http_status(f"{url}{PROBE}") == 401
    assert http_status(f"{url}{PROBE}", ("tl-admin", "not-the-password")) == 401
    assert http_status(f"{url}{PROBE}", _auth(auth_mlflow)) == 200
    assert http_status(f"{url}/health") == 200  # health checks need no credentials

    # The product's client path: credentials from settings, artifacts proxied through the server.
    client = configure_mlflow(auth_mlflow)
    experiment_id = client.create_experiment(f"auth-{secrets.token_hex(4)}")
    run = client.create_run(experiment_id)
    client.log_param(run.info.run_id, "lr", "0.1")
    (tmp_path / "note.txt").write_text("through the proxy")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    assert client.get_run(run.info.run_id).data.params == {"lr": "0.1"}
    fetched = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="note.txt")
    assert Path(fetched).read_text() == "through the proxy"
    # The server caches a credential it has checked (auth_cache_ttl_seconds), keyed by the password:
    # right after the admin's requests, a wrong password for the same user is still refused.
    assert http_status(f"{url}{PROBE}", (_auth(auth_mlflow)[0], "not-the-password")) == 401

    # And the write really needed them: the same call without credentials is refused.
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/runs/create",
        data=json.dumps({"experiment_id": experiment_id}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 401


@pytest.mark.service
def test_status_checks_the_credentials_not_just_the_port(auth_mlflow: Settings) -> None:
    good = {s.name: s for s in stack.status(auth_mlflow)}["mlflow"]
    assert (good.healthy, good.auth, good.problem) == (True, True, None)

    wrong = auth_mlflow.model_copy(update={"mlflow_password": SecretStr("wrong-password-123")})
    refused = {s.name: s for s in stack.status(wrong)}["mlflow"]
    assert not refused.healthy
    assert "refused the credentials of user 'tl-admin'" in (refused.problem or "")

    anonymous = auth_mlflow.model_copy(update={"mlflow_password": None})
    missing = {s.name: s for s in stack.status(anonymous)}["mlflow"]
    assert not missing.healthy and "TUNELINE_MLFLOW_PASSWORD" in (missing.problem or "")


@pytest.mark.service
def test_auth_state_persists_and_the_password_is_written_nowhere(
    auth_mlflow: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = auth_mlflow.home
    # Only what this "later command" is given: a session fixture may have exported TUNELINE_* values.
    for key in [k for k in os.environ if k.startswith("TUNELINE_")]:
        monkeypatch.delenv(key)
    # A later command with only the home (and the password from its environment) finds auth on.
    later = Settings(_env_file=None, home=home, mlflow_password=auth_mlflow.mlflow_password)  # type: ignore[call-arg]
    recorded = stack.with_stack_credentials(later)
    assert (recorded.mlflow_auth, recorded.mlflow_username) == (True, "tl-admin")
    # An explicit choice wins over the record.
    assert not stack.with_stack_credentials(later.model_copy(update={"mlflow_auth": False})).mlflow_auth

    password = _auth(auth_mlflow)[1]
    written = [p for p in home.rglob("*") if p.is_file() and not p.name.endswith(".db")]
    assert stack.stack_env_path(auth_mlflow) in written
    assert MlflowServer().auth_config_path(auth_mlflow) in written
    assert [str(p) for p in written if password.encode() in p.read_bytes()] == []
    record = _process.running_record(home.resolve(), "mlflow")
    assert record is not None and "basic-auth" in record.argv
    assert not any(password in arg for arg in record.argv)  # never on a command line (ps)


def test_without_a_chosen_password_the_stack_generates_one_and_keeps_it_private(
    make_stack_settings: Callable[..., Settings],
) -> None:
    settings = make_stack_settings()
    assert settings.mlflow_auth and settings.mlflow_password is None  # auth is on by default
    generated = stack.with_stack_credentials(settings, create=True)
    assert generated.mlflow_password is not None and len(generated.mlflow_password.get_secret_value()) >= 12
    env_file = stack.stack_env_path(settings)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    # A later command finds the same one; a second `up` does not replace it.
    again = stack.with_stack_credentials(settings, create=True)
    assert again.mlflow_password == generated.mlflow_password
    assert env_file.read_text().count("TUNELINE_MLFLOW_PASSWORD=") == 1
    # A password the user chose is used and never written down.
    chosen = make_stack_settings(mlflow_password=SecretStr("chosen-password-" + secrets.token_hex(6)))
    assert stack.with_stack_credentials(chosen, create=True).mlflow_password == chosen.mlflow_password
    assert "TUNELINE_MLFLOW_PASSWORD" not in stack.stack_env_path(chosen).read_text()
    # Insecure: no password is generated and MLflow runs without auth.
    insecure = stack.with_stack_credentials(make_stack_settings(stack_insecure=True), create=True)
    assert (insecure.mlflow_auth, insecure.mlflow_password) == (False, None)


def test_a_chosen_password_shorter_than_mlflows_minimum_fails_before_starting_anything(
    make_stack_settings: Callable[..., Settings],
) -> None:
    settings = make_stack_settings(mlflow_password=SecretStr("short"))
    with pytest.raises(ConfigError, match="at least 12 characters"):
        stack.up(settings)
    assert _process.running_record(settings.home.resolve(), "s3") is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, None),
        ({"s3_server_side_encryption": "AES256"}, {"ServerSideEncryption": "AES256"}),
    ],
    ids=["local-default-off", "explicit-aes256"],
)
def test_mlflow_server_encrypts_proxied_artifacts_like_tuneline_writes(
    make_stack_settings: Callable[..., Settings],
    overrides: dict[str, object],
    expected: dict[str, str] | None,
) -> None:
    # Auth off (an insecure stack): the environment then carries nothing but S3's.
    settings = make_stack_settings(aws_access_key_id="k", aws_secret_access_key="s", mlflow_auth=False, **overrides)
    env = MlflowServer().environment(settings)
    assert (
        json.loads(env["MLFLOW_S3_UPLOAD_EXTRA_ARGS"]) if "MLFLOW_S3_UPLOAD_EXTRA_ARGS" in env else None
    ) == expected
    assert "MLFLOW_AUTH_ADMIN_PASSWORD" not in env and "--app-name" not in MlflowServer().command(settings)


def test_cli_stack_env_prints_the_logins_as_shell_exports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shlex

    from typer.testing import CliRunner

    from tuneline_cli.main import app

    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith("TUNELINE_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("TUNELINE_HOME", str(tmp_path / "home"))
    settings = stack.with_stack_credentials(Settings(_env_file=None, home=tmp_path / "home"), create=True)  # type: ignore[call-arg]
    result = CliRunner().invoke(app, ["stack", "env"])
    assert result.exit_code == 0, result.output
    exports = dict(
        shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in result.output.splitlines()
    )
    assert settings.prefect_api_auth_string and settings.mlflow_password
    assert exports["PREFECT_API_AUTH_STRING"] == settings.prefect_api_auth_string.get_secret_value()
    assert exports["MLFLOW_TRACKING_PASSWORD"] == settings.mlflow_password.get_secret_value()
    assert exports["MLFLOW_TRACKING_USERNAME"] == "admin"
    assert not (tmp_path / "home" / "run").exists()  # nothing was started
