"""infra/docker-compose.yml: valid for Compose, wired like the local stack, and free of secrets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from tuneline.settings import Settings
from tuneline.stack.mlflow_server import MlflowServer
from tuneline.stack.prefect_server import PrefectServer
from tuneline.stack.seaweedfs import SeaweedFS

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
COMPOSE_FILE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"

# Services that run until stopped; each needs a healthcheck for depends_on to mean anything.
LONG_RUNNING = ("postgres", "seaweedfs", "mlflow", "prefect-server", "worker")
# `${VAR:?...}` variables: the secrets, which only infra/.env may hold.
REQUIRED_VARIABLES = (
    "POSTGRES_PASSWORD",
    "PREFECT_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "TUNELINE_AWS_ACCESS_KEY_ID",
    "TUNELINE_AWS_SECRET_ACCESS_KEY",
)


def _defaults() -> Settings:
    # Field defaults only: neither the environment nor a .env file of the developer's.
    return Settings.model_construct()


def _compose_binary() -> list[str] | None:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


def _run_compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    binary = _compose_binary()
    if binary is None:
        pytest.skip("no Compose client: apt-get install -y --no-install-recommends docker-compose")
    # A clean environment: nothing of the developer's may satisfy a ${VAR:?} by accident.
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(env_file.parent)}
    return subprocess.run(
        [*binary, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_docker_compose_config_accepts_the_file_with_the_example_env() -> None:
    result = _run_compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", ["POSTGRES_PASSWORD", "TUNELINE_AWS_SECRET_ACCESS_KEY"])
def test_docker_compose_config_names_a_missing_secret(missing: str, env_example, tmp_path: Path) -> None:
    env_file = tmp_path / "partial.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env_example.items() if k != missing))
    result = _run_compose_config(env_file)
    assert result.returncode != 0
    assert f"set {missing} in infra/.env" in result.stderr


@pytest.mark.parametrize("missing", REQUIRED_VARIABLES)
def test_every_secret_is_required_and_named_when_missing(
    missing: str, env_example, interpolate_compose
) -> None:
    env = {k: v for k, v in env_example.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        interpolate_compose(env)


def test_env_example_holds_placeholders_only_and_the_real_env_is_ignored(env_example) -> None:
    for name in REQUIRED_VARIABLES:
        assert env_example[name].startswith("change-me"), f"{name} in .env.example must be a placeholder"
    ignored = subprocess.run(["git", "check-ignore", "-q", "infra/.env"], cwd=REPO_ROOT, capture_output=True)
    assert ignored.returncode == 0, "infra/.env must be git-ignored: it holds the real secrets"


def test_compose_file_holds_no_literal_credentials(compose_raw) -> None:
    for name, service in compose_raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if any(
                word in key for word in ("PASSWORD", "SECRET", "ACCESS_KEY", "CONNECTION_URL", "STORE_URI")
            ):
                assert "${" in str(value), f"{name}.{key} must come from a variable, not the file"


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_services_have_healthchecks(name: str, compose) -> None:
    check = compose["services"][name].get("healthcheck")
    assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no healthcheck"


def test_depends_on_waits_for_health(compose) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert rule == {"condition": "service_healthy"}, f"{name} -> {dependency}"
            assert "healthcheck" in services[dependency], f"{name} waits on {dependency}, which has none"


def test_published_ports_listen_on_loopback_only(compose) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_build_files_and_bind_mounts_exist(compose) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = (INFRA / build["context"]).resolve()
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name}: {source} is not in infra/"


def test_worker_settings_are_tuneline_settings_pointing_at_the_services(compose) -> None:
    env = compose["services"]["worker"]["environment"]
    fields = set(Settings.model_fields)
    tuneline_keys = {k for k in env if k.startswith("TUNELINE_")}
    unknown = {k for k in tuneline_keys if k.removeprefix("TUNELINE_").lower() not in fields}
    assert not unknown, f"not Settings fields: {sorted(unknown)}"

    defaults = _defaults()
    s3 = urlsplit(env["TUNELINE_S3_ENDPOINT_URL"])
    assert (s3.hostname, s3.port) == ("seaweedfs", defaults.s3_port)
    mlflow = urlsplit(env["TUNELINE_MLFLOW_TRACKING_URI"])
    assert (mlflow.hostname, mlflow.port) == ("mlflow", defaults.mlflow_port)
    prefect = urlsplit(env["TUNELINE_PREFECT_API_URL"])
    assert (prefect.hostname, prefect.port, prefect.path) == ("prefect-server", defaults.prefect_port, "/api")
    assert env["PREFECT_API_URL"] == env["TUNELINE_PREFECT_API_URL"]
    assert env["TUNELINE_S3_BUCKET"] == defaults.s3_bucket
    # The credentials the S3 server creates are the ones the worker presents.
    weed = compose["services"]["seaweedfs"]["environment"]
    assert env["TUNELINE_AWS_ACCESS_KEY_ID"] == weed["AWS_ACCESS_KEY_ID"]
    assert env["TUNELINE_AWS_SECRET_ACCESS_KEY"] == weed["AWS_SECRET_ACCESS_KEY"]


def _flags(argv: list[str]) -> dict[str, str]:
    """``-name=value`` arguments of a weed command line."""
    return dict(arg.lstrip("-").split("=", 1) for arg in argv if arg.startswith("-") and "=" in arg)


def test_seaweedfs_runs_with_the_local_stack_flags(compose, tmp_path: Path) -> None:
    settings = _defaults().model_copy(update={"home": tmp_path})
    local = SeaweedFS().command(settings)
    service = compose["services"]["seaweedfs"]
    assert service["command"][0] == local[1] == "mini"
    ours, theirs = _flags(local), _flags(service["command"])
    # Inside the container: its own data path, reachable by the other containers, and the
    # internal components on weed's default ports (only S3 is used from outside).
    # (s3.config: the compose SeaweedFS has the one identity of its environment, not the local
    # stack's separate pipeline and audit-writer identities.)
    container_only = {"dir", "ip", "ip.bind", "s3.config"}
    internal_ports = {
        f"{component}.{kind}"
        for component in ("master", "volume", "filer", "admin")
        for kind in ("port", "port.grpc")
    }
    expected = {k: v for k, v in ours.items() if k not in container_only | internal_ports}
    assert {k: theirs.get(k) for k in expected} == expected
    assert theirs["ip.bind"] == "0.0.0.0"


def test_mlflow_proxies_artifacts_to_the_same_place_as_the_local_stack(compose, tmp_path: Path) -> None:
    settings = _defaults().model_copy(update={"home": tmp_path})
    local = MlflowServer().command(settings)
    service = compose["services"]["mlflow"]
    command = service["command"]

    def option(argv: list[str], name: str) -> str:
        return argv[argv.index(name) + 1]

    assert option(command, "--artifacts-destination") == option(local, "--artifacts-destination")
    assert option(command, "--port") == option(local, "--port")
    env = service["environment"]
    assert urlsplit(env["MLFLOW_S3_ENDPOINT_URL"]).hostname == "seaweedfs"
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://mlflow:")
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow")
    # MLflow 3 rejects Host headers it does not know: the worker calls it by service name.
    assert "mlflow:5000" in env["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")


def test_prefect_server_runs_with_the_local_stack_options(compose, tmp_path: Path) -> None:
    settings = _defaults().model_copy(update={"home": tmp_path, "prefect_api_auth_string": SecretStr("tuneline:x")})
    local = PrefectServer()
    service = compose["services"]["prefect-server"]
    # Authenticated like the local stack: the server requires the string every client sends.
    assert "PREFECT_SERVER_API_AUTH_STRING" in local.environment(settings)
    server_auth = service["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert server_auth and compose["services"]["worker"]["environment"]["PREFECT_API_AUTH_STRING"] == server_auth
    assert "--analytics-off" in local.command(settings) and "--analytics-off" in service["command"]
    env = service["environment"]
    for key in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK"):
        assert env[key] == local.environment(settings)[key]
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:")
    assert service["image"] == "prefecthq/prefect:3.8.8-python3.11"


def test_worker_polls_the_local_process_pool(compose) -> None:
    command = compose["services"]["worker"]["command"]
    assert command[command.index("--pool") + 1] == "tuneline-local"
    assert command[command.index("--type") + 1] == "process"
