"""Stage 4, approve: the policy gate, the reviewer's proof of identity, and the record of whoever decided."""

from __future__ import annotations

from datetime import UTC, datetime

from tuneline.config import RunConfig, SuiteKind
from tuneline.errors import PromotionError
from tuneline.governance.approval import POLICY_ACTOR, ApprovalRecord, Review, decide
from tuneline.governance.audit import AuditLog
from tuneline.governance.policy import evaluate_policy
from tuneline.governance.registry import ModelRegistry
from tuneline.governance.reviewers import ReviewerRegistry, authenticate
from tuneline.lineage import Decision, EvaluationReport, PolicyResult
from tuneline.stages.context import StageContext

__all__ = [
    "NOTHING_NEW",
    "authenticate_review",
    "evidence_markdown",
    "gate",
    "policy_markdown",
    "record_decision",
    "same_as_champion",
    "unchanged_decision",
]

NOTHING_NEW = "nothing new to decide"
_MODEL_URI_TAG = "tuneline.model_uri"  # the weights a version was registered from (stages.evaluate)


def gate(config: RunConfig, report: EvaluationReport) -> PolicyResult:
    safety = [s.name for s in config.evaluation.suites if s.kind is SuiteKind.SAFETY]
    return evaluate_policy(config.approval, report, safety_suites=safety)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def policy_markdown(config: RunConfig, result: PolicyResult) -> str:
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
        lines.append(f"| {c.suite} / {c.metric} | {c.check} | {_fmt(c.value)} | {_fmt(c.threshold)} | {mark} |")
    if not result.checks:
        lines.append("| — | no checks configured | | | |")
    return "\n".join(lines)


def evidence_markdown(
    config: RunConfig, result: PolicyResult, report: EvaluationReport, links: dict[str, str], largest: int = 3
) -> str:
    """What a reviewer needs on the Resume form: the gate, every delta with its CI, the largest
    regressions, and where to look further."""
    lines = [policy_markdown(config, result), "", "### Candidate vs " + (
        f"champion v{report.champion_version}" if report.champion_version else "base model"
    ), "", "| suite / metric | baseline | candidate | delta [95% CI] | n |", "| --- | --- | --- | --- | --- |"]
    for c in report.comparisons:
        ci = f" [{c.ci_low:+.3f}, {c.ci_high:+.3f}]" if c.ci_low is not None and c.ci_high is not None else ""
        lines.append(
            f"| {c.suite} / {c.metric} | {c.baseline} {_fmt(c.values.get(c.baseline))} | "
            f"{_fmt(c.values.get('candidate'))} | {c.delta:+.3f}{ci} | {c.n} |"
        )
    # a regression is a change in the worse direction, whichever way the metric points
    worse = sorted(
        (c for c in report.comparisons if (c.delta < 0) == c.higher_is_better and c.delta != 0),
        key=lambda c: -abs(c.delta),
    )[:largest]
    lines += ["", "### Largest regressions", ""]
    lines += [f"- {c.suite} / {c.metric}: {c.delta:+.3f} against {c.baseline}" for c in worse] or ["- none"]
    if links:
        lines += ["", "### Links", ""] + [f"- [{label}]({url})" for label, url in links.items()]
    return "\n".join(lines)


def same_as_champion(ctx: StageContext, config: RunConfig, report: EvaluationReport) -> str | None:
    """The champion's version when the candidate is the champion's own weights (same job), else None."""
    if report.champion_version is None:
        return None
    champion = ModelRegistry(ctx.mlflow).champion(config.name)
    if champion is None or str(champion.version) != report.champion_version:
        return None
    return str(champion.version) if (champion.tags or {}).get(_MODEL_URI_TAG) == report.candidate_uri else None


def unchanged_decision(result: PolicyResult, champion_version: str) -> Decision:
    return Decision(
        approved=False,
        decided_by=POLICY_ACTOR,
        decided_at=datetime.now(UTC),
        reasons=[f"{NOTHING_NEW}: the candidate is champion v{champion_version} (same job); no one was asked"],
        policy=result,
        unchanged=True,
    )


def authenticate_review(
    ctx: StageContext, config: RunConfig, review: Review, report: EvaluationReport, flow_run_id: str | None = None
) -> str | None:
    """None when the review comes from an enrolled, allowed reviewer with a valid token; otherwise
    the reason, after auditing the refused attempt (it never becomes a decision)."""
    try:
        authenticate(config.approval, review, ReviewerRegistry(ctx.store, ctx.mlflow))
    except PromotionError as exc:
        reason = str(exc)
    else:
        return None
    AuditLog(ctx.store, ctx.mlflow).append(
        ApprovalRecord(
            kind="refused-approval",
            model_name=config.name,
            recorded_at=datetime.now(UTC),
            actor=review.reviewer,
            approved=None,
            reasons=[f"refused {review.decision} attempt: {reason}"],
            comment=review.comment,
            flow_run_id=flow_run_id,
            mlflow_run_id=ctx.run_id,
            candidate_uri=report.candidate_uri,
        )
    )
    return reason


def record_decision(
    ctx: StageContext,
    config: RunConfig,
    result: PolicyResult,
    review: Review | None,
    evaluation_summary: dict[str, dict[str, float]],
    flow_run_id: str | None = None,
    report: EvaluationReport | None = None,
    decision: Decision | None = None,
) -> Decision:
    """Decide, then write the decision to this run's MLflow run and the audit log before returning it.

    ``review`` must already be authenticated (``authenticate_review``); ``decision`` is given when
    the stage decided without the policy (nothing new to decide).
    """
    decision = decision or decide(config.approval, result, review)
    if ctx.run_id:
        ctx.mlflow.set_tag(ctx.run_id, "tuneline.approved", str(decision.approved).lower())
        ctx.mlflow.set_tag(ctx.run_id, "tuneline.decided_by", decision.decided_by)
        ctx.mlflow.log_dict(ctx.run_id, decision.model_dump(mode="json"), "approve/decision.json")
    AuditLog(ctx.store, ctx.mlflow).append(
        ApprovalRecord(
            kind="approval",
            model_name=config.name,
            model_version=report.champion_version if decision.unchanged and report else None,
            recorded_at=datetime.now(UTC),
            actor=decision.decided_by,
            approved=decision.approved,
            reasons=decision.reasons,
            comment=decision.comment,
            decision=decision,
            evaluation_summary=evaluation_summary,
            flow_run_id=flow_run_id,
            mlflow_run_id=ctx.run_id,
            candidate_uri=report.candidate_uri if report else None,
            authenticated=review is not None and review.reviewer != POLICY_ACTOR,
        )
    )
    return decision
