"""Turning a policy result (and, where asked for, a person's review) into a recorded decision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

from tuneline.config import ApprovalPolicy
from tuneline.errors import PromotionError
from tuneline.lineage import Decision, PolicyResult

__all__ = ["ApprovalRecord", "Review", "check_reviewer", "decide", "timed_out_review"]

POLICY_ACTOR = "policy"


class Review(BaseModel):
    """A person's decision on a candidate. The Prefect UI renders this as the approval form."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["approve", "reject"] = Field(description="Approve promotes the candidate to champion.")
    reviewer: str = Field(min_length=1, description="Your reviewer name (enrolled with `tuneline reviewers add`).")
    token: SecretStr = Field(
        default=SecretStr(""),
        description="Your reviewer token; a decision without a valid one is refused and audited.",
    )
    comment: str = Field(default="", description="Why; recorded with the decision.")


def check_reviewer(policy: ApprovalPolicy, review: Review) -> None:
    """Refuse a review from anyone outside the policy's allowed reviewers."""
    if policy.reviewers is not None and review.reviewer not in policy.reviewers:
        allowed = ", ".join(policy.reviewers)
        raise PromotionError(f"reviewer {review.reviewer!r} may not approve this model; allowed: {allowed}")


def timed_out_review(timeout_seconds: int) -> Review:
    return Review(
        decision="reject",
        reviewer=POLICY_ACTOR,
        comment=f"no decision within {timeout_seconds} s: rejected by timeout",
    )


def decide(
    policy: ApprovalPolicy, result: PolicyResult, review: Review | None = None, now: datetime | None = None
) -> Decision:
    """The decision: the policy alone, or a person's review on top of it.

    A person may approve a candidate that failed a check (the failed checks stay in the record);
    a candidate that no one approved when a person was required is rejected.
    """
    now = now or datetime.now(UTC)
    failed = [f"{c.suite}/{c.metric} {c.check}: {c.detail}" for c in result.checks if not c.passed]
    if review is None:
        if result.needs_human:
            return Decision(
                approved=False,
                decided_by=POLICY_ACTOR,
                decided_at=now,
                reasons=["a human decision was required but none was given", *failed],
                policy=result,
            )
        reasons = failed or [f"all {len(result.checks)} policy checks passed"]
        return Decision(approved=result.passed, decided_by=POLICY_ACTOR, decided_at=now, reasons=reasons, policy=result)

    if review.reviewer != POLICY_ACTOR:  # a timeout is recorded under the policy's name
        check_reviewer(policy, review)
    approved = review.decision == "approve"
    reasons = [f"{review.reviewer} chose to {review.decision}"]
    if approved and failed:
        reasons.append("approved despite failed checks: " + "; ".join(failed))
    elif failed:
        reasons.extend(failed)
    return Decision(
        approved=approved,
        decided_by=review.reviewer,
        decided_at=now,
        reasons=reasons,
        comment=review.comment,
        policy=result,
    )


class ApprovalRecord(BaseModel):
    """One line of the audit log: a decision, a refused attempt, a promotion or rollback, or a
    reviewer's enrolment, and everything needed to audit it later.

    Enrolments sit on a chain of their own (``ReviewerRegistry.chain``, not a model's): ``actor``
    enrolled ``reviewer``, and ``credential_digest`` binds the credential object stored then to
    this record, so that one written later outside Tuneline is told apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["approval", "refused-approval", "promotion", "rollback", "enrolment"]
    model_name: str = Field(description="The model whose chain holds the record; for enrolments, the reviewers' chain.")
    model_version: str | None = None
    sequence: int = Field(default=0, description="Position in the model's hash chain, from 1 (set by AuditLog.append).")
    previous_digest: str = Field(default="", description="SHA-256 of the stored bytes of the record before this one.")
    candidate_uri: str | None = Field(default=None, description="The decided candidate's weights (approval records).")
    authenticated: bool = Field(default=False, description="The actor proved who they are (reviewer credential).")
    forced: bool = Field(default=False, description="A rollback to a version that no approval record covers.")
    # aware only: one naive timestamp would make every listing that sorts records by time raise
    recorded_at: AwareDatetime
    actor: str
    approved: bool | None = None
    reasons: list[str] = Field(default_factory=list)
    comment: str = ""
    decision: Decision | None = None
    evaluation_summary: dict[str, dict[str, float]] = Field(default_factory=dict)
    flow_run_id: str | None = None
    mlflow_run_id: str | None = None
    previous_champion: str | None = None
    new_champion: str | None = None
    reviewer: str | None = Field(default=None, description="Who was enrolled (enrolment records).")
    credential_digest: str | None = Field(
        default=None,
        description="SHA-256 of the stored credential object's bytes (enrolment records): neither the "
        "token nor its scrypt hash, and no use for checking a guessed token.",
    )
