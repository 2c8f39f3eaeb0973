"""One subflow per lifecycle stage, so each shows up in the Prefect UI on its own and can be run alone."""

from __future__ import annotations

import sys

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.input.actions import create_flow_run_input, delete_flow_run_input
from prefect.runtime import flow_run
from pydantic import SecretStr

from tasks.approve import check_review, nothing_new_to_decide, record_approval, run_policy_gate
from tasks.evaluate import evaluate_candidate
from tasks.prepare import prepare_dataset
from tasks.promote import promote_model
from tasks.tracking import artifact_key, browsable, object_link
from tasks.tune import stop_tuning_job, tune_model
from tuneline.config import ApprovalMode, RunConfig
from tuneline.governance.approval import Review, timed_out_review
from tuneline.lineage import DatasetVersion, Decision, EvaluationReport, ModelVersionRef, TrainedModel
from tuneline.settings import get_settings
from tuneline.stages.evaluate import EvaluateOutcome
from tuneline.storage.s3 import ObjectStore

__all__ = ["approve", "evaluate", "prepare", "promote", "tune"]


@flow(name="prepare", persist_result=False, log_prints=True)
def prepare(config: RunConfig, mlflow_run_id: str | None = None) -> DatasetVersion:
    """Validate, clean, split and version the run's data."""
    return prepare_dataset(config, mlflow_run_id)


@flow(name="tune", persist_result=False, on_cancellation=[stop_tuning_job])
def tune(config: RunConfig, dataset: DatasetVersion, mlflow_run_id: str | None = None) -> TrainedModel:
    """Tune the base model on the dataset version with the configured backend."""
    return tune_model(config, dataset, mlflow_run_id)


@flow(name="evaluate", persist_result=False)
def evaluate(
    config: RunConfig, dataset: DatasetVersion, model: TrainedModel, mlflow_run_id: str | None = None
) -> EvaluateOutcome:
    """Compare the candidate with the base model and the current champion."""
    return evaluate_candidate(config, dataset, model, mlflow_run_id)


REVIEW_POLL_S = 2  # how long a token may sit in Prefect's run input before the flow reads and deletes it


def _set_parent_state_name(name: str) -> None:
    """Name the parent's Running state (e.g. "Awaiting approval") so the lifecycle run shows the wait.

    Only the approve subflow can pause (Prefect pauses the run that calls it); renaming the
    parent's state keeps it Running for Prefect while telling a person what it waits for.
    """
    parent = flow_run.get_parent_flow_run_id()
    if not parent:
        return
    from uuid import UUID

    from prefect import get_client
    from prefect.states import Running

    with get_client(sync_client=True) as client:
        current = client.read_flow_run(UUID(str(parent))).state
        if current is not None and current.is_running():
            client.set_flow_run_state(UUID(str(parent)), Running(name=name), force=True)


def _commands(run_id: str) -> str:
    return (
        f"tuneline approve {run_id} --reviewer NAME   (asks for your reviewer token)\n"
        f"tuneline reject {run_id} --reviewer NAME --comment WHY"
    )


def _ask_a_person(config: RunConfig, evidence: str, report_markdown: str, report: EvaluationReport,
                  mlflow_run_id: str | None) -> Review:
    logger = get_run_logger()
    run_id = str(flow_run.get_root_flow_run_id() or flow_run.get_id())
    create_markdown_artifact(
        "\n\n".join([
            "# Approval requested",
            "Open the `approve` flow run and press **Resume**: the form asks for a decision, your reviewer "
            "name and token, and a comment. A decision without a valid token is refused and audited.",
            f"From a shell:\n\n```\n{_commands(run_id)}\n```",
            evidence,
            browsable(ObjectStore(get_settings()), report_markdown, report.results_uri),
        ]),
        key=artifact_key(config.name, "approval-request"),
    )
    # written to the terminal, not only logged (the CLI keeps Prefect's log lines quiet): a person
    # running `tuneline run --approval human` must see how to answer
    message = f"Approval needed for {config.name}: decide in the Prefect UI (Resume) or run:\n{_commands(run_id)}"
    logger.info(message)
    sys.stderr.write(f"\n{message}\n\n")
    sys.stderr.flush()
    # No decision filled in: the person chooses approve or reject, nothing is pre-selected for them.
    form = RunInput.subclass_from_base_model_type(Review).with_initial_data(description=evidence, comment="")
    _set_parent_state_name("Awaiting approval")
    try:
        attempt = 0
        while True:
            attempt += 1
            key = f"approval-{attempt}"
            try:
                received = pause_flow_run(
                    wait_for_input=form, timeout=config.approval.timeout_seconds, key=key, poll_interval=REVIEW_POLL_S
                )
            except FlowPauseTimeout:
                logger.warning("no decision within %d s: the candidate is rejected", config.approval.timeout_seconds)
                return timed_out_review(config.approval.timeout_seconds)
            # the token has done its job once read: keep it out of Prefect's database
            delete_flow_run_input(f"paused-{key}-response")
            review = Review.model_validate(received.model_dump())
            reason = check_review(config, review, report, mlflow_run_id)
            verdict = {"accepted": reason is None, "reason": reason or ""}
            create_flow_run_input(f"{key}-verdict", verdict)
            if reason is None:
                return review.model_copy(update={"token": SecretStr("")})
            logger.warning("refused: %s; still waiting for an authenticated reviewer", reason)
    finally:
        _set_parent_state_name("Running")


@flow(name="approve", persist_result=False)
def approve(
    config: RunConfig,
    outcome: EvaluateOutcome,
    mlflow_run_id: str | None = None,
    mode: ApprovalMode | None = None,
) -> Decision:
    """The policy gate, then an authenticated person's decision in the UI when the mode asks for one."""
    if mode is not None:
        config = config.model_copy(update={"approval": config.approval.model_copy(update={"mode": mode})})
    result = run_policy_gate(config, outcome.report)
    unchanged = nothing_new_to_decide(config, outcome.report)
    review = None
    if unchanged is None and result.needs_human:
        from tuneline.stages.approve import evidence_markdown

        settings = get_settings()
        links = {"Prefect flow run": f"{settings.prefect_ui_url}/runs/flow-run/{flow_run.get_root_flow_run_id() or flow_run.get_id()}"}
        if mlflow_run_id:
            from tuneline.storage.tracking import run_url

            links["MLflow run"] = run_url(settings, mlflow_run_id)
        evidence = evidence_markdown(config, result, outcome.report, links)
        if outcome.chart_uri is not None:
            # the deltas with their intervals at a glance, in the form and the request artifact alike
            link = object_link(ObjectStore(settings), outcome.chart_uri)
            evidence += f"\n\n![Candidate against the baseline, per suite and metric, 95% intervals]({link})"
        review = _ask_a_person(config, evidence, outcome.report_markdown, outcome.report, mlflow_run_id)
    return record_approval(
        config, result, review, outcome.summary, mlflow_run_id, report=outcome.report, unchanged_champion=unchanged
    )


@flow(name="promote", persist_result=False)
def promote(
    config: RunConfig,
    dataset: DatasetVersion,
    model: TrainedModel,
    report: EvaluationReport,
    decision: Decision,
    evaluation_summary: dict[str, dict[str, float]],
    mlflow_run_id: str | None = None,
) -> ModelVersionRef:
    """Register the candidate with its lineage; make it champion when approved."""
    root = flow_run.get_root_flow_run_id() or flow_run.get_id()
    return promote_model(
        config, dataset, model, report, decision, evaluation_summary, mlflow_run_id, root and str(root)
    )
