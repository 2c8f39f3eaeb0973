"""Injected faults against real services: outages of S3 and MLflow, a killed run, concurrent runs.

Every scenario runs ``tuneline run`` in a child process against the fault tests' own stack, stops
or kills something mid-run, and checks that the run (or its re-run) ends where an uninterrupted
run would. Measured times are printed as ``FAULT {...}`` lines (``pytest -s``) for
docs/reliability.md.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from mlflow.tracking import MlflowClient
from prefect.client.orchestration import SyncPrefectClient
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterStartTime,
)
from prefect.client.schemas.objects import FlowRun, StateType

from tasks.locks import LEASE_S
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


def _assert_no_lost_or_duplicate_records(settings: Settings, name: str, summary: dict[str, Any]) -> None:
    """What every fault scenario ends with: nothing lost, nothing twice.

    One model version per job identity, one complete dataset version, an audit chain without gaps
    (sequences 1..n), at most one approval record per approve run, and one promotion record per
    champion version.
    """
    assert len(_versions_of_job(settings, name, summary["model"]["job_id"])) == 1
    store = ObjectStore(settings)
    assert list_versions(store, name) == [summary["dataset"]["version"]]
    records = AuditLog(store).records(name)
    assert [r.sequence for r in records] == list(range(1, len(records) + 1)), "a record is missing from the chain"
    approvals = [(r.kind, r.flow_run_id) for r in records if r.kind == "approval"]
    assert len(approvals) == len(set(approvals)), f"an approval was recorded twice: {approvals}"
    promotions = [r.new_champion for r in records if r.kind == "promotion"]
    assert len(promotions) == len(set(promotions)), f"a promotion was recorded twice: {promotions}"
    if summary["version"]["promoted"]:
        assert summary["version"]["version"] in promotions, "the promotion left no audit record"


_RESUMED = re.compile(r"resuming job \S+ from checkpoint step-(\d+)")
# The backend's own log lines (``tuneline.*`` loggers) on the run's stderr, through Prefect's handlers.
_BACKEND_LOGS = {"PREFECT_LOGGING_EXTRA_LOGGERS": "tuneline"}


def _assert_completed(summary: dict[str, Any] | None, rc: int, err: str) -> dict[str, Any]:
    assert rc == 0, err[-4000:]
    # no disassembly in the run's log (dill's, when `datasets` fingerprints the training set)
    assert "LOAD_GLOBAL" not in err, "bytecode in the run's log: " + err[err.index("LOAD_GLOBAL") - 300 :][:600]
    assert summary is not None and summary["version"]["promoted"], summary
    assert summary["model"]["steps"] == 50
    return summary


def test_s3_outage_during_tune_is_ridden_out(fault_stack: Settings, start_lifecycle: Callable[..., Any]) -> None:
    name = "fault-s3-outage"
    run = start_lifecycle(name, seed=201, env=_BACKEND_LOGS)
    _wait_for_checkpoint(run, fault_stack, name)
    before = _s3_keys(fault_stack, f"runs/{name}/")
    down_at, up_at = _outage(fault_stack, "s3", OUTAGE_S)
    # Recovered: the run writes to S3 again (a checkpoint, the status, the model).
    _wait_for(lambda: _s3_keys(fault_stack, f"runs/{name}/") - before, 300, "a write to S3 after the outage", 0.5)
    recovered_at = time.monotonic()
    rc, summary, err = run.finish()
    summary = _assert_completed(summary, rc, err)
    assert "S3 is unavailable" in err and "Retry" in err, "the outage never reached the run"
    # The retried tune task resumed from a checkpoint the first attempt had committed, not step 0 ...
    resumed = [int(step) for step in _RESUMED.findall(err)]
    assert resumed, f"the retry did not resume from a checkpoint:\n{err[-4000:]}"
    assert all(step in {10, 20, 30, 40} for step in resumed), resumed
    # ... and every training step is in MLflow exactly once (the repeated steps were not logged twice).
    history = MlflowClient(fault_stack.mlflow_tracking_uri).get_metric_history(summary["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 51))
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
    _report(
        "s3-outage-30s-during-tune", outage_s=up_at - down_at, recover_s=recovered_at - up_at, run_wall_s=run.wall_s,
        resumed_from_step=max(resumed),
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
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
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
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
    _report("kill9-during-tune", killed_after_checkpoint=killed_at, resumed_from_step=first_step - 1, rerun_wall_s=rerun.wall_s)


def test_concurrent_runs_of_one_model_leave_a_consistent_registry(
    fault_stack: Settings, start_lifecycle: Callable[..., Any]
) -> None:
    name = "fault-concurrent"
    runs = [start_lifecycle(name, seed=seed) for seed in (601, 602)]
    # The second waits out the first's whole lifecycle: twice one run's budget.
    results = [run.finish(timeout_s=1200) for run in runs]
    # Serialised, not refused: the model's lifecycle slot makes the second run wait for the first,
    # and it then evaluates against (and replaces) the champion the first one left.
    for rc, summary, err in results:
        assert rc == 0 and summary is not None and summary["version"]["promoted"], err[-3000:]
    summaries = [summary for _, summary, _ in results]
    assert any("holds the concurrency limit" in err for _, _, err in results), "the runs were not serialised"

    client = MlflowClient(fault_stack.mlflow_tracking_uri)
    model = client.get_registered_model(name)
    champion = client.get_model_version_by_alias(name, CHAMPION)
    assert champion.tags["tuneline.approved"] == "true"
    for summary in summaries:
        assert len(_versions_of_job(fault_stack, name, summary["model"]["job_id"])) == 1  # type: ignore[index]
    records = [r for r in AuditLog(ObjectStore(fault_stack)).records(name) if r.kind == "promotion"]
    assert len(records) == 2
    first, second = records
    assert second.previous_champion == first.new_champion != second.new_champion
    assert second.new_champion == str(champion.version) and model.aliases[PREVIOUS] == first.new_champion
    assert {r.new_champion for r in records} == {s["version"]["version"] for s in summaries}  # type: ignore[index]
    _report("concurrent-runs-same-model", promoted=2, refused=0, wall_s=max(r.wall_s for r in runs))


# --- outages of the orchestrator and of S3 in the other stages ---------------------------------------
SHORT_OUTAGE_S = 5.0


def test_a_prefect_server_outage_during_tune_is_ridden_out(
    fault_stack: Settings, start_lifecycle: Callable[..., Any]
) -> None:
    """The Prefect server (API, lifecycle lock leases, task states) goes away mid-training and
    comes back: the run carries on and completes with every record once."""
    name = "fault-prefect-outage"
    run = start_lifecycle(name, seed=801)
    _wait_for_checkpoint(run, fault_stack, name)
    down_at, up_at = _outage(fault_stack, "prefect", SHORT_OUTAGE_S)
    assert run.proc.poll() is None, "the run ended while the Prefect server was down"
    rc, summary, err = run.finish()
    summary = _assert_completed(summary, rc, err)
    history = MlflowClient(fault_stack.mlflow_tracking_uri).get_metric_history(summary["mlflow_run_id"], "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 51))
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
    _report("prefect-outage-during-tune", outage_s=up_at - down_at, run_wall_s=run.wall_s)


@pytest.mark.parametrize("stage", ["prepare", "evaluate", "promote"])
def test_an_s3_outage_during_a_stage_is_ridden_out(
    fault_stack: Settings, start_lifecycle: Callable[..., Any], prefect: SyncPrefectClient, stage: str
) -> None:
    """S3 stops for a few seconds while ``stage`` runs; the run completes with every record once."""
    name = f"fault-s3-during-{stage}"
    run = start_lifecycle(name, seed={"prepare": 901, "evaluate": 902, "promote": 903}[stage])
    watch = _Watch(prefect, run)
    running = watch.stage_in(stage, StateType.RUNNING, interval_s=0.05)
    down_at = time.monotonic()
    stack.down(fault_stack, services=("s3",))
    state_at_outage = watch.state_of(running.id)
    time.sleep(SHORT_OUTAGE_S)
    stack.up(fault_stack, services=("s3",))
    up_at = time.monotonic()
    assert state_at_outage is StateType.RUNNING, f"{stage} had finished before S3 went down"
    rc, summary, err = run.finish()
    summary = _assert_completed(summary, rc, err)
    assert watch.state_of(running.id) is StateType.COMPLETED
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
    _report(
        f"s3-outage-during-{stage}", outage_s=up_at - down_at, run_wall_s=run.wall_s,
        reached_the_run="S3 is unavailable" in err,
    )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (we run as root in CI): room for the job's spec, not for a checkpoint."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_run_cleanly_and_a_rerun_with_room_completes(
    fault_stack: Settings, start_lifecycle: Callable[..., Any], small_disk: Path
) -> None:
    """The run's local home (job folders, checkpoints, caches) lies on a disk too small for them."""
    name = "fault-full-disk"
    env = {"TUNELINE_HOME": str(small_disk)}
    full = start_lifecycle(name, seed=1001, env=env)
    rc, _, err = full.finish()
    assert rc != 0, "the run completed on a full disk"
    assert "No space left on device" in err, err[-4000:]
    assert "Traceback" not in err.split("error:")[-1], "the failure should end in one line"
    # Nothing half-done became a record: no model version, no audit record, only complete datasets.
    client = MlflowClient(fault_stack.mlflow_tracking_uri)
    assert client.search_model_versions(f"name = '{name}'") == []
    store = ObjectStore(fault_stack)
    assert AuditLog(store).records(name) == []
    for version in list_versions(store, name):
        load_dataset_version(store, store.uri(f"datasets/{name}/{version}/"))

    # Room again (the same mount, grown): the same config completes, every record once.
    subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
    rerun = start_lifecycle(name, seed=1001, env=env)
    rc, summary, err = rerun.finish()
    summary = _assert_completed(summary, rc, err)
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
    _report("full-disk-during-tune", fail_after_s=full.wall_s, rerun_wall_s=rerun.wall_s)


# --- kill -9 in every stage ---------------------------------------------------------------------
# A killed holder's lifecycle slot is freed when its lease lapses (LEASE_S, plus the server's
# 15 s lease sweep); a re-run that waits much longer than that was held up by the dead run.
_LOCK_BOUND_S = LEASE_S + 15 + 30


@pytest.fixture
def prefect(fault_stack: Settings, open_prefect_client: Callable[[Settings], Any]) -> Iterator[SyncPrefectClient]:
    """A Prefect client on the fault stack's server."""
    with open_prefect_client(fault_stack) as client:
        yield client


class _Watch:
    """Finds one lifecycle process's flow runs, by stage, from Prefect's API."""

    def __init__(self, client: SyncPrefectClient, run: Any) -> None:
        self.client, self.run = client, run
        # server times are UTC; the slack covers a child that starts within the same second
        self.since = datetime.now(UTC) - timedelta(seconds=1)
        self._root: FlowRun | None = None

    def _alive(self) -> None:
        if self.run.proc.poll() is not None:
            _, _, err = self.run.finish()
            pytest.fail(f"lifecycle {self.run.name} ended early:\n{err[-4000:]}")

    def root(self) -> FlowRun | None:
        if self._root is None:
            runs = self.client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["customize-model"])),
                flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=self.since)),
            )
            self._root = runs[0] if len(runs) == 1 else None
        return self._root

    def stage(self, stage: str) -> FlowRun | None:
        self._alive()
        root = self.root()
        if root is None:
            return None
        runs = self.client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[stage])),
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[root.id])),
        )
        return runs[0] if runs else None

    def stage_in(
        self, stage: str, *states: StateType, timeout_s: float = 600, interval_s: float = 0.1
    ) -> FlowRun:
        def reached() -> FlowRun | None:
            run = self.stage(stage)
            return run if run is not None and run.state is not None and run.state.type in states else None

        return _wait_for(reached, timeout_s, f"{stage} of {self.run.name} in {states}", interval_s)

    def state_of(self, flow_run_id: UUID) -> StateType | None:
        state = self.client.read_flow_run(flow_run_id).state
        return state.type if state else None


def _last_modified(settings: Settings, prefix: str) -> dict[str, datetime]:
    store = ObjectStore(settings)
    return {
        key: store.client.head_object(Bucket=store.bucket, Key=key)["LastModified"]
        for key in store.list_keys(store.uri(prefix))
    }


_REVIEWER = "fault-reviewer"


def _enrol_reviewer(settings: Settings) -> dict[str, str]:
    """Enrol the chain's reviewer (a decision counts only with a reviewer's token); its env for ``approve``."""
    from tuneline.governance.reviewers import ReviewerRegistry

    token = ReviewerRegistry(ObjectStore(settings)).enroll(_REVIEWER, enrolled_by="fault tests", replace=True)
    return {"TUNELINE_REVIEWER_TOKEN": token}


def _approve(
    tuneline: Callable[..., subprocess.CompletedProcess[str]], flow_run_id: UUID, reviewer_env: dict[str, str]
) -> None:
    done = tuneline("approve", str(flow_run_id), "--reviewer", _REVIEWER, "--comment", "fault test", env=reviewer_env)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.timeout(1800)  # four kills, each re-run waiting out a dead run's lease
def test_a_run_killed_in_each_stage_completes_on_rerun_reusing_its_work(
    fault_stack: Settings,
    start_lifecycle: Callable[..., Any],
    prefect: SyncPrefectClient,
    tuneline_command: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """kill -9 during prepare, evaluate, the approval wait and promote; each re-run goes further.

    One chain, so that each re-run both recovers from one kill and carries the run to the next
    stage to kill (tune has its own test above). Every run has the same config, with a person's
    approval, so that the run pauses.
    """
    store = ObjectStore(fault_stack)
    reviewer_env = _enrol_reviewer(fault_stack)
    start = lambda: start_lifecycle(name, seed=701, approval={"mode": "human"})  # noqa: E731
    recovery: dict[str, dict[str, float]] = {}

    def rerun_after(kill: str) -> tuple[Any, _Watch]:
        """Start the same config again; time how long the dead run's lifecycle slot held it up."""
        rerun = start()
        watch = _Watch(prefect, rerun)
        watch.stage_in("prepare", StateType.RUNNING, StateType.COMPLETED, interval_s=0.5)
        recovery[kill] = {"lock_wait_s": time.monotonic() - rerun.started}
        assert recovery[kill]["lock_wait_s"] < _LOCK_BOUND_S + 45, (
            "the dead run's slot held the re-run too long"
        )
        return rerun, watch

    def recovered(kill: str, rerun: Any) -> None:
        recovery[kill]["recover_s"] = time.monotonic() - rerun.started

    # 1. prepare: killed once the dataset version starts to be written (staged, then published).
    #    Writing it takes well under a second; when prepare wins that race on a busy machine, the
    #    kill did not land in prepare, so the chain starts again under a new model name (a re-run
    #    of the same name would find the version already written).
    for attempt in range(3):
        name = f"fault-kill9-stages-{attempt}"
        run = start()
        watch = _Watch(prefect, run)
        prepare_run = watch.stage_in("prepare", StateType.RUNNING)
        written = functools.partial(_s3_keys, fault_stack, f"datasets/{name}/")
        _wait_for(written, 300, "the dataset version to be written", 0.05)
        run.kill9()
        if watch.state_of(prepare_run.id) is StateType.RUNNING:
            break
    else:
        pytest.fail("prepare finished before the kill three times")
    # only complete versions are listed, and each of them loads
    for version in list_versions(store, name):
        load_dataset_version(store, store.uri(f"datasets/{name}/{version}/"))
    staged = {k for k in _s3_keys(fault_stack, f"datasets/{name}/") if "/_staging/" in k}
    killed_roots = [watch.root()]

    # 2. re-run: passes prepare, trains, and is killed in evaluate once a generation is cached.
    rerun, watch = rerun_after("kill9-during-prepare")
    watch.stage_in("prepare", StateType.COMPLETED, interval_s=0.5)
    recovered("kill9-during-prepare", rerun)
    evaluate_run = watch.stage_in("evaluate", StateType.RUNNING, interval_s=0.5)
    cached = _wait_for(
        lambda: _last_modified(fault_stack, f"eval-cache/{name}/"), 600, "a cached generation", 0.2
    )
    rerun.kill9()
    assert watch.state_of(evaluate_run.id) is StateType.RUNNING, "evaluate finished before the kill"
    killed_roots.append(watch.root())

    # 3. re-run: prepare is a cache hit, the trained job is reused, evaluation reuses the cached
    #    generations; killed while paused for approval.
    rerun, watch = rerun_after("kill9-during-evaluate")
    watch.stage_in("evaluate", StateType.COMPLETED, interval_s=0.5)
    recovered("kill9-during-evaluate", rerun)
    paused = watch.stage_in("approve", StateType.PAUSED, interval_s=0.5)
    rerun.kill9()
    assert "Finished in state Cached" in rerun.stderr, "the dataset build was not a cache hit"
    killed_roots.append(orphan_root := watch.root())

    # 4. re-run: the dead run's approval request is void (Crashed; approving it is refused) and
    #    approval is asked again; approved, then killed in promote.
    rerun, watch = rerun_after("kill9-while-paused-for-approval")
    again = watch.stage_in("approve", StateType.PAUSED, interval_s=0.5)
    recovered("kill9-while-paused-for-approval", rerun)
    assert again.id != paused.id
    for killed in killed_roots:
        assert killed is not None and watch.state_of(killed.id) is StateType.CRASHED, killed
    assert watch.state_of(paused.id) is StateType.CRASHED
    refused = tuneline_command("approve", str(paused.id), "--reviewer", _REVIEWER, env=reviewer_env)
    assert refused.returncode != 0 and "not waiting for approval" in refused.stdout + refused.stderr
    assert orphan_root is not None and (root := watch.root()) is not None
    _approve(tuneline_command, root.id, reviewer_env)
    promote_run = watch.stage_in("promote", StateType.RUNNING, interval_s=0.05)
    rerun.kill9()
    assert watch.state_of(promote_run.id) is StateType.RUNNING, "promote finished before the kill"

    # 5. final re-run: asks again, is approved, and completes.
    rerun, watch = rerun_after("kill9-during-promote")
    _approve(tuneline_command, watch.stage_in("approve", StateType.PAUSED, interval_s=0.5).id, reviewer_env)
    rc, summary, err = rerun.finish()
    summary = _assert_completed(summary, rc, err)
    recovered("kill9-during-promote", rerun)
    # while it waited, the re-run said why; once in, it marked the dead run
    assert "its slot is freed when its lease lapses" in err, err[-3000:]
    assert "was left Running by a process that died; marked Crashed" in err, err[-3000:]

    # Work was reused: the trained job (no training step logged by the final run), the cached
    # generations (never rewritten), and one dataset version.
    client = MlflowClient(fault_stack.mlflow_tracking_uri)
    assert client.get_metric_history(summary["mlflow_run_id"], "train_loss") == []
    after = _last_modified(fault_stack, f"eval-cache/{name}/")
    assert {key: after[key] for key in cached} == cached
    assert list_versions(store, name) == [summary["dataset"]["version"]]
    recovery["kill9-during-prepare"]["staged_keys_at_kill"] = len(staged)
    # One model version for the job, champion, approved by the person who approved the last run.
    versions = _versions_of_job(fault_stack, name, summary["model"]["job_id"])
    assert len(versions) == 1
    assert client.get_model_version_by_alias(name, CHAMPION).version == versions[0].version
    assert summary["decision"]["decided_by"] == "fault-reviewer"
    promotions = [r for r in AuditLog(store).records(name) if r.kind == "promotion"]
    assert {r.new_champion for r in promotions} == {versions[0].version}
    # Nothing lost or twice across five runs: the chain is whole, and the two approvals given (one
    # voided by the kill in promote) are records of distinct approve runs, never one recorded twice.
    _assert_no_lost_or_duplicate_records(fault_stack, name, summary)
    approvals = [r for r in AuditLog(store).records(name) if r.kind == "approval" and r.approved]
    assert 1 <= len(approvals) <= 2 and all(r.actor == _REVIEWER and r.authenticated for r in approvals), approvals

    for scenario, numbers in recovery.items():
        assert numbers["recover_s"] > 0
        _report(scenario, **numbers)
