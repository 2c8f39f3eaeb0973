"""Fixtures for fault-injection tests: a stack of our own, and lifecycle runs in child processes.

The fault tests stop and restart services, so they get their own SeaweedFS + MLflow + Prefect
(on free ports, in a temporary home) rather than the session stack other tests share. Each
lifecycle runs as ``tuneline run CONFIG --json`` in a child process -- what a user runs -- so a
test can kill it with SIGKILL, and so its settings come from the environment alone.

The stack is authenticated as by default (Prefect's auth string, MLflow basic auth, the S3
identities, weed's signed filer); its credentials are fixed, recognisable fake secrets:
``test_secrets.py`` scans everything the runs leave behind for them.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from tuneline import stack
from tuneline.settings import Settings
from tuneline.stack.ports import free_stack_ports

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "support_tickets" / "run.yaml"

# Recognisable, so a scan can tell a leak from a coincidence; random, so no two sessions share one.
FAKE_S3_SECRET = "tlfakes3secret" + secrets.token_hex(12)
FAKE_MLFLOW_PASSWORD = "tlfakemlflowpw" + secrets.token_hex(12)
FAKE_AUDIT_SECRET = "tlfakeauditsecret" + secrets.token_hex(12)
FAKE_PREFECT_AUTH = "tuneline:tlfakeprefectauth" + secrets.token_hex(12)


def _isolated_settings(**values: object) -> Settings:
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("TUNELINE_")}
    try:
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]
    finally:
        os.environ.update(saved)


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A running SeaweedFS + MLflow + Prefect of the fault tests' own, with fake known secrets.

    MLflow runs with basic auth (``stack up --auth``), its admin the fake MLflow user: every
    client path of every fault scenario must send the password, and ``test_secrets.py`` proves
    none wrote it down. (One start with auth, rather than a restart later, saves a minute.)
    """
    settings = _isolated_settings(
        home=tmp_path_factory.mktemp("fault-stack"),
        s3_bucket=f"tuneline-faults-{uuid.uuid4().hex[:8]}",
        aws_access_key_id=SecretStr("TLFAULT" + secrets.token_hex(6).upper()),
        aws_secret_access_key=SecretStr(FAKE_S3_SECRET),
        audit_aws_access_key_id=SecretStr("TLFAULTAUDIT" + secrets.token_hex(4).upper()),
        audit_aws_secret_access_key=SecretStr(FAKE_AUDIT_SECRET),
        prefect_api_auth_string=SecretStr(FAKE_PREFECT_AUTH),
        mlflow_username="tuneline-test",
        mlflow_password=SecretStr(FAKE_MLFLOW_PASSWORD),
        mlflow_auth=True,
        **free_stack_ports(),
    )
    assert not settings.stack_insecure
    try:
        stack.up(settings)
        yield settings
    finally:
        stack.down(settings)


@pytest.fixture(autouse=True)
def _fault_stack_mlflow_credentials(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test's own MLflow client authenticates to the fault stack like the product's does
    (MLflow's standard variables); tests without the fault stack are left alone."""
    if "fault_stack" not in request.fixturenames:
        return
    settings: Settings = request.getfixturevalue("fault_stack")
    assert settings.mlflow_username and settings.mlflow_password
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", settings.mlflow_username)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", settings.mlflow_password.get_secret_value())


@pytest.fixture(scope="session")
def fault_secrets() -> tuple[str, ...]:
    """The fake secret values ``fault_stack`` runs with."""
    return (FAKE_S3_SECRET, FAKE_MLFLOW_PASSWORD, FAKE_AUDIT_SECRET, FAKE_PREFECT_AUTH)


@pytest.fixture(scope="session")
def open_prefect_client() -> Callable[[Settings], Any]:
    """``with open_prefect_client(settings) as client``: a Prefect client sending the stack's auth string."""
    return _prefect_client


@contextmanager
def _prefect_client(settings: Settings) -> Iterator[Any]:
    """A Prefect client of the fault stack's server, sending its auth string."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    assert settings.prefect_api_auth_string is not None
    updates = {
        PREFECT_API_URL: settings.prefect_api_url,
        PREFECT_API_AUTH_STRING: settings.prefect_api_auth_string.get_secret_value(),
    }
    with temporary_settings(updates=updates), get_client(sync_client=True) as client:
        yield client


@pytest.fixture(scope="session")
def example_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example's data and tiny base model, built in a temporary folder."""
    from examples.support_tickets.base_model import build_example_base
    from examples.support_tickets.generate import generate_all

    root = tmp_path_factory.mktemp("example")
    generate_all(root / "data")
    build_example_base(root / "tiny-base")
    return root


@dataclass
class LifecycleProcess:
    """A ``tuneline run`` child process."""

    name: str
    config_path: Path
    proc: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    stdout: str = ""
    stderr: str = ""

    def finish(self, timeout_s: float = 600) -> tuple[int, dict[str, Any] | None, str]:
        """Wait for the run; (exit status, its JSON summary or None, its stderr)."""
        try:
            out, err = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            pytest.fail(f"lifecycle {self.name} did not finish within {timeout_s} s:\n{err[-3000:]}")
        self.ended = time.monotonic()
        self.stdout, self.stderr = out, err
        lines = [line for line in out.splitlines() if line.startswith("{")]
        summary = json.loads(lines[-1]) if lines and self.proc.returncode == 0 else None
        return self.proc.returncode, summary, err

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.stdout, self.stderr = self.proc.communicate()
        self.ended = time.monotonic()

    @property
    def wall_s(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def small_config(
    example: Path, name: str, seed: int, approval: dict[str, Any] | None = None, **tune: Any
) -> dict[str, Any]:
    """The example's config, shrunk for fault tests: 50 steps, checkpoints every 10, no policy checks.

    Each scenario passes its own ``seed`` so that its training job has its own identity (a shared
    one would find the job already trained by another scenario). ``approval`` updates the
    approval policy (e.g. ``{"mode": "human"}``).
    """
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    config["name"] = name
    config["data"]["source"] = str(example / "data" / "tickets.jsonl")
    config["tune"].update(
        base_model=str(example / "tiny-base"),
        max_steps=50,
        checkpoint_every_steps=10,
        eval_every_steps=25,
        seed=seed,
        **tune,
    )
    # 50 steps do not learn the task, and the policy gate is not under test here (promotion is):
    # no checks, and no safety suite, whose metrics the gate checks for regressions implicitly.
    config["evaluation"]["suites"] = [s for s in config["evaluation"]["suites"] if s["kind"] != "safety"]
    for suite in config["evaluation"]["suites"]:
        if suite.get("source"):
            suite["source"] = str(example / "data" / Path(suite["source"]).name)
    config["evaluation"]["bootstrap_samples"] = 200
    config["approval"]["checks"] = []
    config["approval"].update(approval or {})
    return config


@pytest.fixture
def lifecycle_env(fault_stack: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a ``tuneline`` child process: the fault stack's settings, nothing inherited."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELINE_", "PREFECT_", "MLFLOW_"))}
    env.update(fault_stack.as_env())
    env.update(fault_stack.prefect_env())  # the API URL and its auth string
    env.update(
        {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


TUNELINE = str(Path(sys.executable).parent / "tuneline")


@pytest.fixture
def start_lifecycle(
    lifecycle_env: dict[str, str], example_files: Path, tmp_path: Path
) -> Iterator[Callable[..., LifecycleProcess]]:
    """Factory: ``start_lifecycle(name, seed, env={...}, approval={...}, **tune)`` starts ``tuneline run``.

    The same arguments write the same config, so a second call is a re-run of the same config.
    """
    started: list[LifecycleProcess] = []

    def start(
        name: str, seed: int, env: dict[str, str] | None = None, approval: dict[str, Any] | None = None, **tune: Any
    ) -> LifecycleProcess:
        path = tmp_path / f"{name}-{len(started)}.yaml"
        path.write_text(yaml.safe_dump(small_config(example_files, name, seed, approval, **tune)), encoding="utf-8")
        proc = subprocess.Popen(
            [TUNELINE, "run", str(path), "--json"],
            cwd=ROOT,
            env={**lifecycle_env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        run = LifecycleProcess(name, path, proc)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.kill9()


@pytest.fixture
def tuneline_command(lifecycle_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs ``tuneline ARGS`` (e.g. ``approve``) against the fault stack, as a user would; ``env``
    adds variables (a reviewer's ``TUNELINE_REVIEWER_TOKEN``)."""

    def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TUNELINE, *args], cwd=ROOT, env={**lifecycle_env, **(env or {})}, capture_output=True, text=True,
            timeout=120, check=False, stdin=subprocess.DEVNULL,
        )

    return command
