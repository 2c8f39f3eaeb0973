"""No secret leaks: after lifecycle runs with known fake credentials (the pipeline's and the audit
writer's S3 secrets, the MLflow password, the Prefect auth string) and a reviewer's token (enrolled
here, used for a forced rollback through the CLI), none of them appears in MLflow
(params, tags, metric names, artifacts, registry), Prefect (flow run parameters, logs, artifacts,
events, blocks, the run's result storage), S3 (every object in the bucket), the services' database
files and SeaweedFS's data on disk, the job folders, or the command's own output.

This file runs after ``test_faults.py`` in a session (``make test`` runs it after the chain of
killed runs, on the same fault stack), so the scan also covers what killed and re-run lifecycles
left behind. The fault stack's MLflow runs with basic
auth (``stack up --auth``), the fake MLflow password being the admin's: every client path must
send it, and none may write it down.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tuneline.settings import Settings
from tuneline.stack._service import http_status
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.service]


def _mlflow_texts(settings: Settings, download_to: Path) -> Iterator[tuple[str, bytes]]:
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiments = client.search_experiments()
    for experiment in experiments:
        yield f"experiment {experiment.name}", repr(experiment).encode()
        for run in client.search_runs([experiment.experiment_id], max_results=1000):
            where = f"run {run.info.run_id}"
            yield f"{where} params", repr(run.data.params).encode()
            yield f"{where} tags", repr(run.data.tags).encode()
            yield f"{where} metric names", repr(sorted(run.data.metrics)).encode()
            yield f"{where} inputs", repr(run.inputs).encode()
            target = download_to / run.info.run_id
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, dst_path=str(target), tracking_uri=settings.mlflow_tracking_uri
            )
            for path in target.rglob("*"):
                if path.is_file():
                    yield f"{where} artifact {path.relative_to(target)}", path.read_bytes()
        for model in client.search_logged_models([experiment.experiment_id]):
            yield f"logged model {model.model_id}", repr((model.params, model.tags)).encode()
    for registered in client.search_registered_models():
        yield f"registered model {registered.name}", repr(registered).encode()
        for version in client.search_model_versions(f"name = '{registered.name}'"):
            yield f"{registered.name} v{version.version}", repr((version.tags, version.description)).encode()


def _prefect_texts(settings: Settings, prefect_client: Callable[[Settings], Any]) -> Iterator[tuple[str, bytes]]:
    with prefect_client(settings) as client:
        for flow_run in client.read_flow_runs(limit=200):
            yield f"flow run {flow_run.name} parameters", repr(flow_run.parameters).encode()
        offset = 0
        while logs := client.read_logs(limit=200, offset=offset):
            offset += len(logs)
            for log in logs:
                yield f"prefect log {log.flow_run_id}", log.message.encode()
        assert offset > 0, "the Prefect server holds no logs: the scan would prove nothing"
        for artifact in client.read_artifacts(limit=200):
            yield f"prefect artifact {artifact.key}", repr((artifact.data, artifact.description)).encode()
        # Events (every state change, with its flow run's labels and payload), page by page.
        response = client.request("POST", "/events/filter", json={"limit": 50})
        events = 0
        for _ in range(100):
            response.raise_for_status()
            page = response.json()
            for event in page["events"]:
                events += 1
                yield f"prefect event {event['event']} {event['id']}", json.dumps(event).encode()
            if not page.get("next_page"):
                break
            response = client._client.get(page["next_page"])
        assert events > 0, "the Prefect server holds no events: the scan would prove nothing"
        # Blocks, secrets included (a webhook block would hold a URL with a token).
        for block in client.read_block_documents(include_secrets=True):
            yield f"prefect block {block.name}", repr(block.data).encode()


def _s3_objects(settings: Settings) -> Iterator[tuple[str, bytes]]:
    store = ObjectStore(settings)
    keys = list(store.list_keys(store.uri("")))
    assert keys, "the bucket is empty: the scan would prove nothing"
    for key in keys:
        yield f"s3 {key}", store.get_bytes(store.uri(key))


def _files_below(root: Path, label: str) -> Iterator[tuple[str, bytes]]:
    for path in root.rglob("*"):
        if path.is_file():
            yield f"{label} {path.relative_to(root)}", path.read_bytes()


def _prefect_result_storage(prefect_home: Path) -> Iterator[tuple[str, bytes]]:
    """What the lifecycle's own Prefect process persisted: results (the cached dataset build), its
    profile and local state, under the PREFECT_HOME the run was given."""
    files = list(_files_below(prefect_home, "prefect client home"))
    assert any(where.startswith("prefect client home storage/") for where, _ in files), (
        f"no persisted result under {prefect_home}: the scan of result storage would prove nothing"
    )
    yield from files


def _database_files(settings: Settings) -> Iterator[tuple[str, bytes]]:
    """The services' databases as they lie on disk: Prefect's and MLflow's SQLite (WAL files too)
    and SeaweedFS's volumes and filer store, which hold every object's bytes."""
    home = settings.home
    databases = [*(home / "prefect").rglob("*.db*"), *(home / "mlflow").glob("*.db*")]
    assert any(p.name == "prefect.db" for p in databases) and any(p.name == "mlflow.db" for p in databases)
    for path in databases:
        yield f"database {path.relative_to(home)}", path.read_bytes()
    for where, data in _files_below(home / "s3", "seaweedfs data"):
        # The identities file is the S3 keys' designated store (mode 600, like stack.env).
        if not where.endswith("identities.json"):
            yield where, data


def _job_files(settings: Settings) -> Iterator[tuple[str, bytes]]:
    for path in (settings.home / "jobs").rglob("*"):
        if path.is_file():
            yield f"job file {path.relative_to(settings.home)}", path.read_bytes()


def _stack_files(settings: Settings) -> Iterator[tuple[str, bytes]]:
    """The services' logs, pid files (their command lines) and MLflow's auth config."""
    home = settings.home
    paths = [
        *(home / "logs").glob("*.log"),
        *(home / "run").glob("*.pid"),
        home / "mlflow" / "basic_auth.ini",
    ]
    assert (home / "mlflow" / "basic_auth.ini").exists(), "MLflow did not start with auth"
    for path in paths:
        yield f"stack file {path.relative_to(home)}", path.read_bytes()


def test_no_secret_appears_anywhere_a_lifecycle_run_writes(
    fault_stack: Settings,
    fault_secrets: tuple[str, ...],
    start_lifecycle: Callable[..., Any],
    lifecycle_env: dict[str, str],
    open_prefect_client: Callable[[Settings], Any],
    tuneline_command: Callable[..., Any],
    tmp_path: Path,
) -> None:
    identities = fault_stack.home / "s3" / "identities.json"
    assert oct(identities.stat().st_mode & 0o777) == "0o600", "the S3 keys' file is readable by others"
    assert fault_stack.mlflow_username and fault_stack.mlflow_password
    password = fault_stack.mlflow_password.get_secret_value()
    assert password in fault_secrets
    probe = f"{fault_stack.mlflow_tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
    assert http_status(probe, timeout_s=30) == 401, "MLflow answers without credentials: auth is off"

    # A reviewer's token: enrolled (an audit record and a credential), then sent with a forced rollback.
    enrolled = tuneline_command("reviewers", "add", "secrets-reviewer", "--replace")
    assert enrolled.returncode == 0, enrolled.stderr
    token = enrolled.stdout.strip().splitlines()[-1]

    run = start_lifecycle("secrets-scan", seed=101)
    rc, summary, err = run.finish()
    assert rc == 0, err[-4000:]
    assert summary is not None and summary["version"]["promoted"]
    rollback = tuneline_command(
        "rollback", "secrets-scan", "--to-version", summary["version"]["version"], "--force",
        "--actor", "secrets-reviewer", env={"TUNELINE_REVIEWER_TOKEN": token},
    )
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr

    sources = [
        ("tuneline run stdout", run.stdout.encode()),
        ("tuneline run stderr", run.stderr.encode()),
        ("tuneline rollback output", (rollback.stdout + rollback.stderr).encode()),
        *_mlflow_texts(fault_stack, tmp_path / "artifacts"),
        *_prefect_texts(fault_stack, open_prefect_client),
        *_s3_objects(fault_stack),
        *_job_files(fault_stack),
        *_stack_files(fault_stack),
        *_prefect_result_storage(Path(lifecycle_env["PREFECT_HOME"])),
        *_database_files(fault_stack),
    ]
    assert len(sources) > 50
    leaks = [where for where, data in sources for secret in (*fault_secrets, token) if secret.encode() in data]
    assert not leaks, f"secrets found in: {leaks}"
