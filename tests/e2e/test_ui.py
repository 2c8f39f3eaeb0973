"""The platform as a person uses it, in a real browser: a manual run of the `manual` deployment
pauses for approval, the Prefect UI shows its stages and artifacts, the person approves it with the
UI's Resume form, and the MLflow UI shows the new champion. Then the two unattended paths: the
scheduled retraining ends as "Nothing to do" on unchanged data, and a file dropped into the watched
prefix starts an event-triggered run.

Screenshots go to test-artifacts/e2e/ (git-ignored).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from tasks.tracking import artifact_key
from tuneline.config import RunConfig, load_run_config
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.slow, pytest.mark.service, pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]

STAGES = ("prepare", "tune", "evaluate", "approve", "promote")
MODEL = "tickets-ui"


def fast_config(example_dir: Path) -> RunConfig:
    """The reviewed config on the test's copy of the example data, trained briefly.

    A short training fails the policy's quality checks, which does not matter here: in human mode
    the person decides, and the form shows the failed checks next to the approve button.
    """
    config = load_run_config(ROOT / "deployments" / "configs" / "support-tickets.yaml")
    suites = [
        s.model_copy(update={"source": str(example_dir / "data" / Path(s.source).name)}) if s.source else s
        for s in config.evaluation.suites
    ]
    return config.model_copy(
        update={
            "name": MODEL,
            "data": config.data.model_copy(update={"source": str(example_dir / "data" / "tickets.jsonl")}),
            "tune": config.tune.model_copy(
                update={"base_model": str(example_dir / "tiny-base"), "max_steps": 30, "eval_every_steps": 30}
            ),
            "evaluation": config.evaluation.model_copy(update={"suites": suites}),
        }
    )


def flow_runs(client: Any, flow_name: str, **filters: Any) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    return client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])), **filters)


def start(client: Any, deployment: str, parameters: dict[str, Any] | None = None) -> Any:
    """Start a run of a deployment, as the UI's Run button does."""
    return client.create_flow_run_from_deployment(client.read_deployment_by_name(deployment).id, parameters=parameters)


def state_of(client: Any, run_id: UUID) -> Any:
    return client.read_flow_run(run_id).state


def finished(client: Any, run_id: UUID) -> Any:
    state = state_of(client, run_id)
    return state if state.is_final() else None


def wait_for(what: str, probe: Callable[[], Any], timeout_s: float, interval_s: float = 2.0) -> Any:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def test_manual_run_is_approved_in_the_ui_and_becomes_champion(
    installation: Any, prefect_client: Any, browser: Any, example_dir: Path, tmp_path: Path, artifacts_dir: Path
) -> None:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    client, page = prefect_client, browser

    def shot(name: str) -> None:
        page.screenshot(path=str(artifacts_dir / f"{name}.png"), full_page=True)
    config = fast_config(example_dir)
    # Only an enrolled reviewer's decision counts: enrol one, as `tuneline reviewers add` does.
    from tuneline.governance.reviewers import ReviewerRegistry

    token = ReviewerRegistry(ObjectStore(installation.settings)).enroll("ui-reviewer", "e2e", True)
    run = start(client, "customize-model/manual", {"config": config.model_dump(mode="json"), "approval": "human"})

    # --- live training: the progress artifact, caught while the job trains ------------------
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    progress_key = artifact_key(MODEL, "training-progress")

    def training_in_progress() -> Any:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[progress_key])))
        live = [a for a in found if a.description and re.search(r"step [1-9]\d*/30 .*ETA", a.description)]
        if not live and state_of(client, run.id).is_final():
            pytest.fail(f"the run ended before training was seen: {state_of(client, run.id)}")
        return live[0] if live else None

    live = wait_for("the training progress mid-run", training_in_progress, timeout_s=600, interval_s=0.5)
    page.goto(f"{installation.prefect_ui}/artifacts/artifact/{live.id}")
    page.get_by_text(re.compile(r"step \d+/30")).first.wait_for(timeout=30_000)
    shot("00-training-progress")

    # --- the run pauses for a person; the "approval needed" automation logs a notification ----
    def paused_approval() -> Any:
        children = flow_runs(
            client, "approve", flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
        paused = [c for c in children if c.state and c.state.is_paused()]
        if not paused and state_of(client, run.id).is_final():
            pytest.fail(f"the run ended without pausing: {state_of(client, run.id)}; see {installation.worker_log}")
        return paused[0] if paused else None

    approval = wait_for("the approve stage to pause", paused_approval, timeout_s=720, interval_s=3)

    ui = installation.prefect_ui
    page.goto(f"{ui}/runs/flow-run/{run.id}")
    page.get_by_text("Awaiting approval", exact=True).first.wait_for(timeout=30_000)  # the parent shows the wait
    page.get_by_text("Subflow Runs", exact=True).click()
    for stage in STAGES[:4]:
        page.get_by_text(stage, exact=True).first.wait_for(timeout=30_000)
    shot("01-run-paused-subflows")

    # --- approve in the UI: the paused stage's Resume button opens the Review form ----------
    page.goto(f"{ui}/runs/flow-run/{approval.id}")
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(artifact_key(MODEL, "approval-request")).first.wait_for(timeout=30_000)
    shot("02-approval-request-artifact")
    page.get_by_role("button", name="Resume").click()
    form = page.get_by_role("dialog")
    form.wait_for(timeout=30_000)
    # The form opens with the evidence: the gate's checks, every delta with its CI, the regressions
    form.get_by_text(re.compile(f"Approval gate for.*{MODEL}")).first.wait_for()
    form.get_by_text("Largest regressions").first.wait_for()
    form.get_by_text("delta [95% CI]").first.wait_for()
    # Decision is Prefect's own select (opened from the keyboard), with nothing pre-selected
    form.get_by_text("Decision", exact=True).wait_for()
    form.locator(".p-select-button__control").first.focus()
    page.keyboard.press("ArrowDown")
    page.get_by_role("option", name="approve", exact=True).click()
    # Reviewer, Token and Comment are textareas, in field order (Prefect 3.8.8 renders the
    # token's `format: password` as plain text; docs/operations.md lists that as a residual risk)
    reviewer, token_box, comment = form.get_by_role("textbox").all()
    token_box.fill(token)
    reviewer.fill("ui-reviewer")
    comment.fill("approved in the browser test")
    shot("03-approval-form")
    form.get_by_role("button", name="Submit").click()

    final = wait_for("the run to finish after approval", lambda: finished(client, run.id), timeout_s=300, interval_s=3)
    assert final.is_completed(), f"{final.name}: {final.message}; see {installation.worker_log}"

    # --- the finished run: five stage subflows and their artifacts --------------------------
    page.goto(f"{ui}/runs/flow-run/{run.id}")
    page.get_by_text("Completed").first.wait_for(timeout=30_000)
    page.get_by_text("Subflow Runs", exact=True).click()
    for stage in STAGES:
        page.get_by_text(stage, exact=True).first.wait_for(timeout=30_000)
    shot("04-run-completed-subflows")
    page.goto(f"{ui}/artifacts")
    for key in ("data-report", "approval-request", "promotion"):  # keys are per model
        page.get_by_text(artifact_key(MODEL, key), exact=True).first.wait_for(timeout=30_000)
    shot("05-artifacts")

    # --- MLflow UI: the approved version is the champion ------------------------------------
    page.goto(f"{installation.settings.mlflow_tracking_uri}/#/models/{MODEL}")
    page.get_by_text(re.compile(r"^@?\s*champion$")).first.wait_for(timeout=60_000)
    shot("06-mlflow-champion")
    from mlflow.tracking import MlflowClient

    champion = MlflowClient(installation.settings.mlflow_tracking_uri).get_model_version_by_alias(MODEL, "champion")
    assert champion.tags["tuneline.decided_by"] == "ui-reviewer"

    # --- the "approval needed" automation ran the notify flow ------------------------------
    def approval_notification() -> Any:
        runs = flow_runs(client, "notify")
        return [r for r in runs if r.parameters.get("event") == "prefect.flow-run.Paused"
                and r.parameters.get("flow_run", "").endswith(str(approval.id)) and r.state.is_completed()]

    wait_for("the approval-needed notification", approval_notification, timeout_s=120)

    # --- scheduled retraining on unchanged data: nothing to do, no tuning ------------------
    config_path = tmp_path / "tickets-ui.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    retrain = start(client, "retrain/scheduled-retraining", {"config_path": str(config_path)})
    state = wait_for("the scheduled retraining", lambda: finished(client, retrain.id), timeout_s=240, interval_s=3)
    assert state.is_completed() and state.name == "Nothing to do", f"{state.name}: {state.message}"
    assert f"champion v{champion.version}" in state.message
    assert flow_runs(client, "tune", flow_run_filter=FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[retrain.id]))) == []
    page.goto(f"{ui}/runs/flow-run/{retrain.id}")
    page.get_by_text("Nothing to do").first.wait_for(timeout=30_000)
    shot("07-scheduled-nothing-to-do")

    # --- a file dropped into the watched prefix starts an on-new-data run -------------------
    store = ObjectStore(installation.settings)
    dropped = store.put_bytes(
        "s3://tuneline/incoming/support-tickets/tickets-2.jsonl", (example_dir / "data" / "tickets.jsonl").read_bytes()
    )
    sensor = start(client, "watch-for-data/watch-for-data")  # it runs every minute too; now saves the wait
    sensed = wait_for("the sensor run", lambda: finished(client, sensor.id), timeout_s=180, interval_s=3)
    # One sensor run at a time (collision strategy CANCEL_NEW): when a scheduled run holds the
    # slot, this one is cancelled and that run, or the next a minute later, sees the file.
    assert sensed.is_completed() or "concurrency limit" in (sensed.message or ""), sensed.message

    def event_triggered_run() -> Any:
        runs = [r for r in flow_runs(client, "retrain") if r.parameters.get("data_source") == dropped]
        return runs[0] if runs else None

    triggered = wait_for("an on-new-data run for the dropped file", event_triggered_run, timeout_s=180)
    assert client.read_deployment(triggered.deployment_id).name == "on-new-data"
    page.goto(f"{ui}/runs/flow-run/{triggered.id}")
    page.get_by_text("Parameters", exact=True).click()
    page.get_by_text(dropped).first.wait_for(timeout=30_000)
    shot("08-event-triggered-run")
    # Training on the new file is the lifecycle above again: stop here to keep the test short.
    from prefect.states import Cancelling

    client.set_flow_run_state(triggered.id, Cancelling(), force=True)

    # --- MLflow's evaluation views: one evaluation run per model, their traces, the chart -------
    mlflow_ui = installation.settings.mlflow_tracking_uri
    experiment_id = MlflowClient(mlflow_ui).get_run(champion.run_id).info.experiment_id
    page.goto(f"{mlflow_ui}/#/experiments/{experiment_id}/evaluation-runs")
    page.get_by_text(re.compile(r"-eval-candidate$")).first.wait_for(timeout=60_000)
    shot("09-mlflow-evaluation-runs")
    page.goto(f"{mlflow_ui}/#/experiments/{experiment_id}/traces")
    page.get_by_text("expected_response").first.wait_for(timeout=60_000)
    shot("10-mlflow-traces")
    # One chart per suite, base vs candidate (vs champion) with confidence intervals, on the run
    charts = [a.path for a in MlflowClient(mlflow_ui).list_artifacts(champion.run_id, "evaluate/charts")]
    assert "evaluate/charts/task.comparison.png" in charts, charts
    # MLflow serves an artifact as a download: fetch it as this logged-in browser, then show it
    chart = page.request.get(f"{mlflow_ui}/get-artifact?path=evaluate/charts/task.comparison.png&run_uuid={champion.run_id}")
    assert chart.ok and chart.body()[:8] == b"\x89PNG\r\n\x1a\n", chart.status
    page.set_content(f'<img alt="task comparison" src="data:image/png;base64,{base64.b64encode(chart.body()).decode()}">')
    page.get_by_alt_text("task comparison").wait_for()
    shot("11-comparison-chart")
    (artifacts_dir / "summary.json").write_text(
        json.dumps({"run": str(run.id), "approval": str(approval.id), "champion": champion.version,
                    "retrain": str(retrain.id), "triggered": str(triggered.id)}, indent=1)
    )
