"""Stage 4, approve: the policy gate, and the record of whoever decided."""

from __future__ import annotations

from datetime import UTC, datetime

from tuneline.config import RunConfig, SuiteKind
from tuneline.governance.approval import ApprovalRecord, Review, decide
from tuneline.governance.audit import AuditLog
from tuneline.governance.policy import evaluate_policy
from tuneline.lineage import Decision, EvaluationReport, PolicyResult
from tuneline.stages.context import StageContext

__all__ = ["gate", "policy_markdown", "record_decision"]


def gate(config: RunConfig, report: EvaluationReport) -> PolicyResult:
    safety = [s.name for s in config.evaluation.suites if s.kind is SuiteKind.SAFETY]
    return evaluate_policy(config.approval, report, safety_suites=safety)


def policy_markdown(config: RunConfig, result: PolicyResult) -> str:
    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4f}"

    verdict = "PASSED" if result.passed else "FAILED"
    lines = [
        f"## Approval gate for `{config.name}`: policy {verdict}",
        "",
        f"Mode: `{config.approval.mode}`"
        + (" — a person must decide." if result.needs_human else " — decided automatically."),
        "",
        "| suite / metric | check | value | threshold | result |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in result.checks:
        mark = "pass" if c.passed else "**FAIL**"
        if c.borderline:
            mark += " (borderline)"
        lines.append(f"| {c.suite} / {c.metric} | {c.check} | {fmt(c.value)} | {fmt(c.threshold)} | {mark} |")
    if not result.checks:
        lines.append("| — | no checks configured | | | |")
    return "\n".join(lines)


def record_decision(
    ctx: StageContext,
    config: RunConfig,
    result: PolicyResult,
    review: Review | None,
    evaluation_summary: dict[str, dict[str, float]],
    flow_run_id: str | None = None,
) -> Decision:
    """Decide, then write the decision to the MLflow run and the audit log before returning it."""
    decision = decide(config.approval, result, review)
    if ctx.run_id:
        ctx.mlflow.set_tag(ctx.run_id, "tuneline.approved", str(decision.approved).lower())
        ctx.mlflow.set_tag(ctx.run_id, "tuneline.decided_by", decision.decided_by)
        ctx.mlflow.log_dict(ctx.run_id, decision.model_dump(mode="json"), "approve/decision.json")
    AuditLog(ctx.store).append(
        ApprovalRecord(
            kind="approval",
            model_name=config.name,
            recorded_at=datetime.now(UTC),
            actor=decision.decided_by,
            approved=decision.approved,
            reasons=decision.reasons,
            comment=decision.comment,
            decision=decision,
            evaluation_summary=evaluation_summary,
            flow_run_id=flow_run_id,
            mlflow_run_id=ctx.run_id,
        )
    )
    return decision
