"""Approval tasks: run the policy gate, and record the decision (MLflow tags + audit log)."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from tasks._retry import RETRY_DELAYS, transient_only
from tuneline.config import RunConfig
from tuneline.governance.approval import Review
from tuneline.lineage import Decision, EvaluationReport, PolicyResult
from tuneline.settings import get_settings
from tuneline.stages.approve import gate, policy_markdown, record_decision
from tuneline.stages.context import StageContext
from tuneline.storage.tracking import unreachable_as_service_error

__all__ = ["record_approval", "run_policy_gate"]


@task(name="policy-gate", persist_result=False)
def run_policy_gate(config: RunConfig, report: EvaluationReport) -> PolicyResult:
    result = gate(config, report)
    get_run_logger().info(
        "policy %s (%d checks, %d failed); a person must decide: %s",
        "passed" if result.passed else "failed", len(result.checks),
        sum(not c.passed for c in result.checks), result.needs_human,
    )
    create_markdown_artifact(policy_markdown(config, result), key="policy-gate")
    return result


@task(name="record-decision", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def record_approval(
    config: RunConfig,
    result: PolicyResult,
    review: Review | None,
    evaluation_summary: dict[str, dict[str, float]],
    mlflow_run_id: str | None = None,
) -> Decision:
    ctx = StageContext(get_settings(), run_id=mlflow_run_id)
    root_id = flow_run.get_root_flow_run_id() if flow_run.get_id() else None
    with unreachable_as_service_error():
        decision = record_decision(
            ctx, config, result, review, evaluation_summary, flow_run_id=root_id and str(root_id)
        )
    get_run_logger().info(
        "%s by %s: %s", "APPROVED" if decision.approved else "REJECTED", decision.decided_by, "; ".join(decision.reasons)
    )
    return decision
