"""A whole Tuneline installation for browser tests: the stack on free ports, the work pool, every
deployment and automation of the repository's prefect.yaml, and a worker, each started the way a
user starts them (the `prefect` and `tuneline` commands).

The stack is authenticated as by default: the commands and the worker get Prefect's auth string and
MLflow's credentials from the settings (``prefect_env()``, ``as_env()``), and the browser logs in
to the Prefect UI through its login page and to MLflow with HTTP basic auth before a test gets it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from tuneline import stack
from tuneline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass
class Installation:
    settings: Settings
    env: dict[str, str]
    worker_log: Path

    @property
    def prefect_ui(self) -> str:
        return self.settings.prefect_ui_url

    def run(self, *argv: str, timeout: float = 300) -> str:
        """Run a command in the repository as a user would; fail the test with its output if it fails."""
        proc = subprocess.run(
            list(argv), cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert proc.returncode == 0, f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout


def _up_in_parallel(settings: Settings) -> None:
    """S3 first (MLflow stores artifacts there), then MLflow and Prefect side by side: ~half the wait."""
    stack.up(settings, services=("s3",))
    errors: list[BaseException] = []

    def start(name: str) -> None:
        try:
            stack.up(settings, services=(name,))
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(name,)) for name in ("mlflow", "prefect")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


@pytest.fixture
def installation(
    make_stack_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Installation]:
    # The bucket is the deployments' default (the sensor watches s3://tuneline/incoming/...): this
    # SeaweedFS is the test's own, so the name collides with nothing.
    settings = stack.with_stack_credentials(make_stack_settings(s3_bucket="tuneline"), create=True)
    assert not settings.stack_insecure and settings.prefect_api_auth_string and settings.mlflow_password
    # The test's own MLflow clients authenticate like the product's (MLflow's standard variables).
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", settings.mlflow_username or "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", settings.mlflow_password.get_secret_value())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELINE_", "PREFECT_"))}
    env.update(settings.as_env())
    env.update(settings.prefect_env())  # the API URL and its auth string
    env.update(
        {
            "PREFECT_UI_URL": settings.prefect_ui_url,
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    worker_log = ARTIFACTS / "worker.log"
    worker: subprocess.Popen[bytes] | None = None
    try:
        _up_in_parallel(settings)
        inst = Installation(settings, env, worker_log)
        inst.run(str(BIN / "prefect"), "work-pool", "create", "tuneline-local", "--type", "process")
        inst.run(str(BIN / "tuneline"), "deployments", "render", "--check")
        inst.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        inst.run(str(BIN / "tuneline"), "automations", "apply")
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "tuneline-local", "--type", "process"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        yield inst
    finally:
        if worker is not None:
            # Only what this fixture started: the worker (leading its own session) and its flow runs.
            runs = psutil.Process(worker.pid).children(recursive=True)
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
            for proc in psutil.wait_procs(runs, timeout=10)[1]:
                proc.kill()
        stack.down(settings)


@pytest.fixture
def prefect_client(installation: Installation) -> Iterator[Any]:
    """A Prefect client of the installation's server, for waiting on runs (the UI does the rest)."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    auth = installation.settings.prefect_api_auth_string
    assert auth is not None
    updates = {PREFECT_API_URL: installation.settings.prefect_api_url, PREFECT_API_AUTH_STRING: auth.get_secret_value()}
    with temporary_settings(updates=updates):
        with get_client(sync_client=True) as client:
            yield client


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def example_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled example's data and its tiny base model, built in a temporary folder."""
    from examples.support_tickets.base_model import build_example_base
    from examples.support_tickets.generate import generate_all

    root = tmp_path_factory.mktemp("example")
    generate_all(root / "data")
    build_example_base(root / "tiny-base")
    return root


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A page in Debian's headless Chromium, driven by Playwright.

    With an ``installation`` in the test, the page is logged in as a person would: MLflow's basic
    auth (the browser's credentials prompt) and the Prefect UI's login page, given the auth string
    that ``tuneline stack env`` prints as PREFECT_API_AUTH_STRING.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    installation: Installation | None = (
        request.getfixturevalue("installation") if "installation" in request.fixturenames else None
    )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            options: dict[str, Any] = {"viewport": {"width": 1400, "height": 1000}}
            if installation is not None:
                settings = installation.settings
                assert settings.mlflow_password is not None
                options["http_credentials"] = {
                    "username": settings.mlflow_username or "admin",
                    "password": settings.mlflow_password.get_secret_value(),
                }
            page = chromium.new_context(**options).new_page()
            if installation is not None:
                _log_in_to_prefect(page, installation)
            yield page
        finally:
            chromium.close()


def _log_in_to_prefect(page: Any, installation: Installation) -> None:
    """The Prefect UI's own login page: without it the UI shows nothing of the server."""
    auth = installation.settings.prefect_api_auth_string
    assert auth is not None
    page.goto(f"{installation.prefect_ui}/dashboard")
    password = page.get_by_placeholder("admin:pass")
    password.wait_for(timeout=60_000)  # the UI sends an unauthenticated visitor to its login page
    password.fill(auth.get_secret_value())
    page.get_by_role("button", name="Login").click()
    page.wait_for_url(lambda url: "/login" not in url, timeout=60_000)
    password.wait_for(state="detached", timeout=60_000)
