"""Approval tasks: the policy gate, the reviewer's proof of identity, the recorded decision, and the
rollback that needs an approval. Every audit write holds the model's promotion slot (``audit_lock``)."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from tasks._retry import RETRY_DELAYS, transient_only
from tasks.locks import audit_lock
from tasks.tracking import artifact_key
from tuneline.config import RunConfig
from tuneline.governance.approval import ApprovalRecord, Review
from tuneline.governance.audit import AuditLog
from tuneline.governance.reviewers import ReviewerRefusedError, ReviewerRegistry
from tuneline.lineage import Decision, EvaluationReport, ModelVersionRef, PolicyResult
from tuneline.settings import get_settings
from tuneline.stages.approve import (
    authenticate_review,
    gate,
    policy_markdown,
    record_decision,
    same_as_champion,
    unchanged_decision,
)
from tuneline.stages.context import StageContext
from tuneline.stages.promote import run_rollback
from tuneline.storage.tracking import unreachable_as_service_error

__all__ = [
    "REVIEWER_TOKEN_ENV",
    "check_review",
    "nothing_new_to_decide",
    "record_approval",
    "rollback_with_approval",
    "run_policy_gate",
]

REVIEWER_TOKEN_ENV = "TUNELINE_REVIEWER_TOKEN"  # read in-process, never passed as a flow parameter


def _root_run_id() -> str | None:
    root_id = flow_run.get_root_flow_run_id() if flow_run.get_id() else None
    return root_id and str(root_id)


@task(name="policy-gate", persist_result=False)
def run_policy_gate(config: RunConfig, report: EvaluationReport) -> PolicyResult:
    result = gate(config, report)
    get_run_logger().info(
        "policy %s (%d checks, %d failed); a person must decide: %s",
        "passed" if result.passed else "failed", len(result.checks),
        sum(not c.passed for c in result.checks), result.needs_human,
    )
    create_markdown_artifact(policy_markdown(config, result), key=artifact_key(config.name, "policy-gate"))
    return result


@task(name="nothing-new-to-decide", persist_result=False)
def nothing_new_to_decide(config: RunConfig, report: EvaluationReport) -> str | None:
    """The champion's version when the candidate is the champion's own weights, else None."""
    with unreachable_as_service_error():
        return same_as_champion(StageContext(get_settings()), config, report)


@task(name="check-reviewer", persist_result=False)
def check_review(config: RunConfig, review: Review, report: EvaluationReport, mlflow_run_id: str | None = None) -> str | None:
    """None when the review is authenticated; else the reason, audited as a refused attempt."""
    ctx = StageContext(get_settings(), run_id=mlflow_run_id)
    with audit_lock(config.name), unreachable_as_service_error():
        reason = authenticate_review(ctx, config, review, report, flow_run_id=_root_run_id())
    if reason:
        get_run_logger().warning("refused %s from %r: %s", review.decision, review.reviewer, reason)
    return reason


@task(name="record-decision", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def record_approval(
    config: RunConfig,
    result: PolicyResult,
    review: Review | None,
    evaluation_summary: dict[str, dict[str, float]],
    mlflow_run_id: str | None = None,
    report: EvaluationReport | None = None,
    unchanged_champion: str | None = None,
) -> Decision:
    ctx = StageContext(get_settings(), run_id=mlflow_run_id)
    decision = unchanged_decision(result, unchanged_champion) if unchanged_champion else None
    with audit_lock(config.name), unreachable_as_service_error():
        decision = record_decision(
            ctx, config, result, review, evaluation_summary, flow_run_id=_root_run_id(), report=report, decision=decision
        )
    get_run_logger().info(
        "%s by %s: %s",
        "UNCHANGED" if decision.unchanged else "APPROVED" if decision.approved else "REJECTED",
        decision.decided_by, "; ".join(decision.reasons),
    )
    return decision


@task(name="rollback-model", persist_result=False)
def rollback_with_approval(
    model_name: str, to_version: str | None, actor: str, reason: str, force: bool = False
) -> ModelVersionRef:
    """Roll back to an approved version; ``force`` another one when ``actor`` is an enrolled reviewer
    whose token is in this process's ``TUNELINE_REVIEWER_TOKEN``."""
    settings = get_settings()
    ctx = StageContext(settings)
    forced_by = None
    if force:
        try:
            with unreachable_as_service_error():  # an MLflow outage is retried, not a refusal
                ReviewerRegistry(ctx.store, ctx.mlflow).verify(actor, os.environ.get(REVIEWER_TOKEN_ENV, ""))
        except ReviewerRefusedError as exc:
            with audit_lock(model_name), unreachable_as_service_error():
                AuditLog(ctx.store, ctx.mlflow).append(ApprovalRecord(
                    kind="refused-approval", model_name=model_name, model_version=to_version,
                    recorded_at=datetime.now(UTC), actor=actor, reasons=[f"refused forced rollback: {exc}"],
                ))
            raise
        forced_by = actor
    with audit_lock(model_name), unreachable_as_service_error():
        ref = run_rollback(ctx, model_name, to_version, actor, reason, forced_by=forced_by)
    get_run_logger().info("%s champion rolled back from v%s to v%s", model_name, ref.previous_champion, ref.version)
    return ref
