"""One subflow per lifecycle stage, so each shows up in the Prefect UI on its own and can be run alone."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.runtime import flow_run

from tasks.approve import record_approval, run_policy_gate
from tasks.evaluate import evaluate_candidate
from tasks.prepare import prepare_dataset
from tasks.promote import promote_model
from tasks.tune import stop_tuning_job, tune_model
from tuneline.config import ApprovalMode, RunConfig
from tuneline.errors import PromotionError
from tuneline.governance.approval import Review, check_reviewer, timed_out_review
from tuneline.lineage import DatasetVersion, Decision, EvaluationReport, ModelVersionRef, TrainedModel
from tuneline.stages.evaluate import EvaluateOutcome

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


def _ask_a_person(config: RunConfig, gate_markdown: str, report_markdown: str) -> Review:
    logger = get_run_logger()
    run_id = flow_run.get_root_flow_run_id() or flow_run.get_id()
    create_markdown_artifact(
        "\n\n".join([
            "# Approval requested",
            "Open this flow run and press **Resume**: the form asks for a decision, your name and a comment.",
            f"From a shell: `tuneline approve {run_id} --reviewer NAME` or `tuneline reject {run_id} --reviewer NAME`.",
            gate_markdown,
            report_markdown,
        ]),
        key="approval-request",
    )
    attempt = 0
    while True:
        attempt += 1
        try:
            review = pause_flow_run(
                wait_for_input=Review, timeout=config.approval.timeout_seconds, key=f"approval-{attempt}"
            )
        except FlowPauseTimeout:
            logger.warning("no decision within %d s: the candidate is rejected", config.approval.timeout_seconds)
            return timed_out_review(config.approval.timeout_seconds)
        try:
            check_reviewer(config.approval, review)
        except PromotionError as exc:
            logger.warning("%s; still waiting for an allowed reviewer", exc)
            continue
        return review


@flow(name="approve", persist_result=False)
def approve(
    config: RunConfig,
    outcome: EvaluateOutcome,
    mlflow_run_id: str | None = None,
    mode: ApprovalMode | None = None,
) -> Decision:
    """The policy gate, then a person's decision in the UI when the mode asks for one."""
    if mode is not None:
        config = config.model_copy(update={"approval": config.approval.model_copy(update={"mode": mode})})
    result = run_policy_gate(config, outcome.report)
    review = None
    if result.needs_human:
        from tuneline.stages.approve import policy_markdown

        review = _ask_a_person(config, policy_markdown(config, result), outcome.report_markdown)
    return record_approval(config, result, review, outcome.summary, mlflow_run_id)


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
