from __future__ import annotations

import pytest

from tuneline.config import ApprovalMode, ApprovalPolicy, MetricCheck
from tuneline.governance.policy import evaluate_policy
from tuneline.lineage import EvaluationReport, MetricComparison


def make_report(*comparisons: MetricComparison) -> EvaluationReport:
    return EvaluationReport(candidate_uri="s3://b/m", comparisons=list(comparisons), results_uri="s3://b/r.parquet")


def comparison(
    metric: str = "exact_match",
    candidate: float = 0.8,
    baseline: float = 0.5,
    suite: str = "task",
    ci: tuple[float, float] | None = (0.2, 0.4),
    higher_is_better: bool = True,
    n: int = 100,
    called: bool = True,
) -> MetricComparison:
    return MetricComparison(
        suite=suite,
        metric=metric,
        values={"candidate": candidate, "base": baseline},
        baseline="base",
        delta=candidate - baseline,
        ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None,
        n=n,
        higher_is_better=higher_is_better,
        called=called,
    )


@pytest.mark.parametrize(
    ("check", "comp", "passed"),
    [
        (MetricCheck(suite="task", metric="exact_match", min_value=0.7), comparison(candidate=0.8), True),
        (MetricCheck(suite="task", metric="exact_match", min_value=0.9), comparison(candidate=0.8), False),
        (MetricCheck(suite="task", metric="exact_match", min_gain=0.2), comparison(candidate=0.8, baseline=0.5), True),
        (MetricCheck(suite="task", metric="exact_match", min_gain=0.4), comparison(candidate=0.8, baseline=0.5), False),
        (MetricCheck(suite="task", metric="exact_match", min_gain=0.0), comparison(called=False, n=3), False),
        (MetricCheck(suite="task", metric="exact_match", require_significant=True), comparison(ci=(0.01, 0.3)), True),
        (MetricCheck(suite="task", metric="exact_match", require_significant=True), comparison(ci=(-0.1, 0.3)), False),
        (MetricCheck(suite="task", metric="exact_match", max_regression=0.05), comparison(candidate=0.47, baseline=0.5), True),
        (MetricCheck(suite="task", metric="exact_match", max_regression=0.05), comparison(candidate=0.4, baseline=0.5), False),
        # lower is better: latency dropping from 2.0 to 1.0 is a gain of 1.0
        (
            MetricCheck(suite="task", metric="latency", min_gain=0.5),
            comparison(metric="latency", candidate=1.0, baseline=2.0, ci=(-1.2, -0.8), higher_is_better=False),
            True,
        ),
        (
            MetricCheck(suite="task", metric="latency", require_significant=True),
            comparison(metric="latency", candidate=1.0, baseline=2.0, ci=(-1.2, -0.8), higher_is_better=False),
            True,
        ),
        (MetricCheck(suite="task", metric="missing", min_value=0.1), comparison(), False),
    ],
    ids=[
        "min-value-pass", "min-value-fail", "min-gain-pass", "min-gain-fail", "min-gain-too-few-examples",
        "significant-pass", "significant-ci-crosses-zero", "max-regression-within", "max-regression-exceeded",
        "lower-is-better-gain", "lower-is-better-significant", "metric-not-evaluated",
    ],
)
def test_each_check(check: MetricCheck, comp: MetricComparison, passed: bool) -> None:
    result = evaluate_policy(ApprovalPolicy(checks=[check]), make_report(comp))
    assert result.passed is passed
    assert len(result.checks) >= 1


def test_safety_suite_defaults_to_no_regression() -> None:
    report = make_report(comparison(), comparison(suite="safety", metric="refusal", candidate=0.9, baseline=1.0))
    result = evaluate_policy(ApprovalPolicy(), report, safety_suites=["safety"])
    assert not result.passed
    (check,) = result.checks
    assert (check.suite, check.check, check.threshold) == ("safety", "max_regression", 0.0)


def test_explicit_safety_check_replaces_the_default() -> None:
    report = make_report(comparison(suite="safety", metric="refusal", candidate=0.9, baseline=1.0))
    policy = ApprovalPolicy(checks=[MetricCheck(suite="safety", metric="refusal", max_regression=0.2)])
    assert evaluate_policy(policy, report, safety_suites=["safety"]).passed


@pytest.mark.parametrize(
    ("mode", "candidate", "needs_human"),
    [
        (ApprovalMode.AUTO, 0.71, False),
        (ApprovalMode.HUMAN, 0.95, True),
        (ApprovalMode.HUMAN_ON_DOUBT, 0.95, False),
        (ApprovalMode.HUMAN_ON_DOUBT, 0.71, True),
    ],
    ids=["auto-never-asks", "human-always-asks", "on-doubt-clear-pass", "on-doubt-borderline"],
)
def test_modes(mode: ApprovalMode, candidate: float, needs_human: bool) -> None:
    policy = ApprovalPolicy(mode=mode, checks=[MetricCheck(suite="task", metric="exact_match", min_value=0.7)])
    result = evaluate_policy(policy, make_report(comparison(candidate=candidate)))
    assert result.passed
    assert result.needs_human is needs_human
