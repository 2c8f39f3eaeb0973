from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tuneline.config import ApprovalMode, ApprovalPolicy
from tuneline.errors import PromotionError
from tuneline.governance.approval import Review, decide, timed_out_review
from tuneline.lineage import CheckResult, PolicyResult

NOW = datetime(2026, 11, 22, tzinfo=UTC)


def policy_result(passed: bool = True, needs_human: bool = False) -> PolicyResult:
    check = CheckResult(suite="task", metric="em", check="min_value", value=0.8 if passed else 0.1,
                        threshold=0.5, passed=passed, detail="candidate vs required")
    return PolicyResult(passed=passed, needs_human=needs_human, checks=[check])


@pytest.mark.parametrize(("passed", "approved"), [(True, True), (False, False)], ids=["pass", "fail"])
def test_automatic_decision_follows_the_policy(passed: bool, approved: bool) -> None:
    decision = decide(ApprovalPolicy(), policy_result(passed), now=NOW)
    assert decision.approved is approved
    assert decision.decided_by == "policy"
    assert decision.decided_at == NOW


def test_missing_human_decision_is_a_rejection() -> None:
    decision = decide(ApprovalPolicy(mode=ApprovalMode.HUMAN), policy_result(needs_human=True), now=NOW)
    assert not decision.approved
    assert "human decision was required" in decision.reasons[0]


def test_reviewer_can_approve_and_is_recorded() -> None:
    review = Review(decision="approve", reviewer="ana", comment="looks right")
    decision = decide(ApprovalPolicy(mode=ApprovalMode.HUMAN), policy_result(needs_human=True), review, now=NOW)
    assert decision.approved and decision.decided_by == "ana" and decision.comment == "looks right"


def test_approving_a_failed_policy_keeps_the_failures_in_the_record() -> None:
    review = Review(decision="approve", reviewer="ana")
    decision = decide(ApprovalPolicy(), policy_result(passed=False), review, now=NOW)
    assert decision.approved
    assert any("despite failed checks" in r for r in decision.reasons)


def test_reviewer_outside_the_allowed_list_is_refused() -> None:
    policy = ApprovalPolicy(mode=ApprovalMode.HUMAN, reviewers=["ana", "bo"])
    with pytest.raises(PromotionError, match="'mallory' may not approve"):
        decide(policy, policy_result(needs_human=True), Review(decision="approve", reviewer="mallory"))


def test_timeout_is_recorded_as_a_rejection() -> None:
    policy = ApprovalPolicy(mode=ApprovalMode.HUMAN, reviewers=["ana"])
    decision = decide(policy, policy_result(needs_human=True), timed_out_review(60), now=NOW)
    assert not decision.approved
    assert "no decision within 60 s" in decision.comment
