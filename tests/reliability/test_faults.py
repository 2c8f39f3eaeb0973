"""Injected faults against real services: outages of S3 and MLflow, a killed run, concurrent runs.

Every scenario runs ``tuneline run`` in a child process against the fault tests' own stack, stops
or kills something mid-run, and checks that the run (or its re-run) ends where an uninterrupted
run would. Measured times are printed as ``FAULT {...}`` lines (``pytest -s``) for
docs/reliability.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from tuneline import stack
from tuneline.data.versions import list_versions, load_dataset_version
from tuneline.governance.audit import AuditLog
from tuneline.governance.registry import CHAMPION, JOB_ID_TAG, PREVIOUS
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.service]

OUTAGE_S = 30.0


def _report(scenario: str, **numbers: Any) -> None:
    print("FAULT " + json.dumps({"scenario": scenario, **{k: round(v, 1) if isinstance(v, float) else v for k, v in numbers.items()}}))


def _wait_for(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")


def _wait_for_checkpoint(run: Any, settings: Settings, name: str, step: int = 10) -> None:
    def reached() -> bool:
        if run.proc.poll() is not None:
            _, _, err = run.finish()
            pytest.fail(f"lifecycle {name} ended before checkpoint step-{step}:\n{err[-4000:]}")
        return step in _checkpoints(settings, name)

    _wait_for(reached, 600, f"checkpoint step-{step} of {name}")


def _checkpoints(settings: Settings, name: str) -> set[int]:
    """Steps of the committed local checkpoints of run ``name``'s training jobs."""
    steps = set()
    for spec in (settings.home / "jobs").glob("*/spec.json"):
        if json.loads(spec.read_text(encoding="utf-8"))["name"] == name:
            steps |= {int(p.name[5:]) for p in (spec.parent / "checkpoints").glob("step-*") if p.name[5:].isdigit()}
    return steps


def _outage(settings: Settings, service: str, seconds: float) -> tuple[float, float]:
    """Stop ``service``, keep it down ``seconds``, start it again; (down at, healthy again at)."""
    down_at = time.monotonic()
    stack.down(settings, services=(service,))
    time.sleep(max(0.0, seconds - (time.monotonic() - down_at)))
    stack.up(settings, services=(service,))
    return down_at, time.monotonic()


def _s3_keys(settings: Settings, prefix: str) -> set[str]:
    store = ObjectStore(settings)
    return set(store.list_keys(store.uri(prefix)))


def _latest_run_metrics(settings: Settings, name: str) -> dict[str, float] | None:
    client = MlflowClient(settings.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    return dict(runs[0].data.metrics) if runs else None


def _versions_of_job(settings: Settings, name: str, job_id: str) -> list[Any]:
    client = MlflowClient(settings.mlflow_tracking_uri)
    return client.search_model_versions(f"name = '{name}' and tags.`{JOB_ID_TAG}` = '{job_id}'")


def _assert_completed(summary: dict[str, Any] | None, rc: int, err: str) -> dict[str, Any]:
    assert rc == 0, err[-4000:]
    assert summary is not None and summary["version"]["promoted"], summary
    assert summary["model"]["steps"] == 50
    return summary


def test_s3_outage_during_tune_is_ridden_out(fault_stack: Settings, start_lifecycle: Callable[..., Any]) -> None:
    name = "fault-s3-outage"
    run = start_lifecycle(name, seed=201)
    _wait_for_checkpoint(run, fault_stack, name)
    before = _s3_keys(fault_stack, f"runs/{name}/")
    down_at, up_at = _outage(fault_stack, "s3", OUTAGE_S)
    # Recovered: the run writes to S3 again (a checkpoint, the status, the model).
    _wait_for(lambda: _s3_keys(fault_stack, f"runs/{name}/") - before, 300, "a write to S3 after the outage", 0.5)
    recovered_at = time.monotonic()
    rc, summary, err = run.finish()
    _assert_completed(summary, rc, err)
    assert "S3 is unavailable" in err and "Retry" in err, "the outage never reached the run"
    _report(
        "s3-outage-30s-during-tune", outage_s=up_at - down_at, recover_s=recovered_at - up_at, run_wall_s=run.wall_s
    )


def test_mlflow_outage_during_tune_is_ridden_out(fault_stack: Settings, start_lifecycle: Callable[..., Any]) -> None:
    name = "fault-mlflow-outage"
    run = start_lifecycle(name, seed=301)
    _wait_for_checkpoint(run, fault_stack, name)
    seen = _latest_run_metrics(fault_stack, name)
    down_at, up_at = _outage(fault_stack, "mlflow", OUTAGE_S)
    _wait_for(lambda: _latest_run_metrics(fault_stack, name) != seen, 300, "a write to MLflow after the outage", 0.5)
    recovered_at = time.monotonic()
    rc, summary, err = run.finish()
    summary = _assert_completed(summary, rc, err)
    # No training metric was lost while MLflow was down.
    history = MlflowClient(fault_stack.mlflow_tracking_uri).get_metric_history(summary["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 51))
    _report(
        "mlflow-outage-30s-during-tune", outage_s=up_at - down_at, recover_s=recovered_at - up_at, run_wall_s=run.wall_s
    )


def test_outages_past_the_retry_budget_fail_naming_the_service_and_a_rerun_completes(
    fault_stack: Settings, start_lifecycle: Callable[..., Any]
) -> None:
    name = "fault-long-outage"
    # A short budget, so the test does not wait out the default one (5 + 15 + 45 s of task
    # retries on top of MLflow's own ~4 min of HTTP retries).
    short = {
        "TUNELINE_TASK_RETRY_DELAYS_S": "[1, 2]",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    }
    for service, label in (("mlflow", "MLflow"), ("s3", "S3")):
        stack.down(fault_stack, services=(service,))
        try:
            failed = start_lifecycle(name, seed=401, env=short)
            rc, _, err = failed.finish()
        finally:
            stack.up(fault_stack, services=(service,))
        assert rc != 0
        assert f"{label} is unavailable" in err, err[-3000:]
        assert "Traceback" not in err.split("error:")[-1], "the failure should end in one line naming the service"
        _report(f"{service}-down-past-retry-budget", fail_after_s=failed.wall_s)

    rerun = start_lifecycle(name, seed=401)
    rc, summary, err = rerun.finish()
    _assert_completed(summary, rc, err)
    _report("rerun-after-long-outages", run_wall_s=rerun.wall_s)


def test_a_run_killed_during_tune_resumes_on_rerun_and_registers_one_version(
    fault_stack: Settings, start_lifecycle: Callable[..., Any]
) -> None:
    name = "fault-kill9"
    run = start_lifecycle(name, seed=501)
    _wait_for_checkpoint(run, fault_stack, name)
    run.kill9()
    killed_at = max(_checkpoints(fault_stack, name))
    assert killed_at < 50, "the run finished training before it was killed"

    rerun = start_lifecycle(name, seed=501)
    rc, summary, err = rerun.finish()
    summary = _assert_completed(summary, rc, err)

    # resumed from a checkpoint, not from step 0: the re-run logged only the steps after it
    history = MlflowClient(fault_stack.mlflow_tracking_uri).get_metric_history(summary["mlflow_run_id"], "train_loss")
    first_step = min(m.step for m in history)
    assert first_step > 1 and first_step - 1 in {10, 20, 30, 40}, first_step
    # one model version for the job; only complete dataset versions are visible
    assert len(_versions_of_job(fault_stack, name, summary["model"]["job_id"])) == 1
    store = ObjectStore(fault_stack)
    versions = list_versions(store, name)
    assert versions == [summary["dataset"]["version"]]
    assert load_dataset_version(store, summary["dataset"]["uri"]).accepted == summary["dataset"]["accepted"]
    _report("kill9-during-tune", killed_after_checkpoint=killed_at, resumed_from_step=first_step - 1, rerun_wall_s=rerun.wall_s)


def test_concurrent_runs_of_one_model_leave_a_consistent_registry(
    fault_stack: Settings, start_lifecycle: Callable[..., Any]
) -> None:
    name = "fault-concurrent"
    runs = [start_lifecycle(name, seed=seed) for seed in (601, 602)]
    results = [run.finish() for run in runs]
    promoted = [summary for rc, summary, _ in results if rc == 0 and summary and summary["version"]["promoted"]]
    failed = [err for rc, _, err in results if rc != 0]
    assert promoted, [err[-2000:] for err in failed]
    # a run that lost the race is refused with the reason, never half-applied
    for err in failed:
        assert "champion of" in err and "changed since evaluation" in err, err[-3000:]

    client = MlflowClient(fault_stack.mlflow_tracking_uri)
    model = client.get_registered_model(name)
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert champion.tags["tuneline.approved"] == "true"
    for summary in promoted:
        assert len(_versions_of_job(fault_stack, name, summary["model"]["job_id"])) == 1
    records = [r for r in AuditLog(ObjectStore(fault_stack)).records(name) if r.kind == "promotion"]
    assert len(records) == len(promoted)
    assert records[-1].new_champion == str(champion.version)
    if len(promoted) == 2:
        assert model.aliases[PREVIOUS] == records[0].new_champion == records[-1].previous_champion
    _report("concurrent-runs-same-model", promoted=len(promoted), refused=len(failed), wall_s=max(r.wall_s for r in runs))
