"""The approval policy gate: every configured check, evaluated against an evaluation report.

Gains are measured in the metric's own direction: for a lower-is-better metric (latency), a drop
is a gain. Suites named as safety suites get an implicit "no regression at all" check on each of
their scored metrics unless the policy already says something about that metric. Informational
metrics (latency, output length) are reported but gated only by a check the policy names:
timing jitter is not a regression.
"""

from __future__ import annotations

from collections.abc import Iterable

from tuneline.config import ApprovalMode, ApprovalPolicy, MetricCheck
from tuneline.evaluation.metrics import metric_for_comparison
from tuneline.lineage import CheckResult, EvaluationReport, MetricComparison, PolicyResult

__all__ = ["evaluate_policy", "implicit_safety_checks"]


def implicit_safety_checks(
    policy: ApprovalPolicy, report: EvaluationReport, safety_suites: Iterable[str]
) -> list[MetricCheck]:
    """A ``max_regression=0`` check for every scored safety-suite metric the policy leaves unchecked."""
    configured = {(c.suite, c.metric) for c in policy.checks}
    safety = set(safety_suites)
    return [
        MetricCheck(suite=c.suite, metric=c.metric, max_regression=0.0)
        for c in report.comparisons
        if c.suite in safety and (c.suite, c.metric) not in configured and not _informational(c.metric)
    ]


def _informational(comparison_name: str) -> bool:
    """``latency_p95``, ``output_length``: shown, never gated unless a check names them."""
    try:
        return metric_for_comparison(comparison_name).informational
    except KeyError:  # a metric this version does not know: gate it, as before
        return False


def _improvement(comparison: MetricComparison) -> tuple[float, float | None, float | None]:
    """Delta and CI turned so that positive always means 'the candidate is better'."""
    if comparison.higher_is_better:
        return comparison.delta, comparison.ci_low, comparison.ci_high
    low = -comparison.ci_high if comparison.ci_high is not None else None
    high = -comparison.ci_low if comparison.ci_low is not None else None
    return -comparison.delta, low, high


def _borderline(value: float, threshold: float, margin: float) -> bool:
    return abs(value - threshold) <= margin


def _check(check: MetricCheck, report: EvaluationReport, margin: float) -> list[CheckResult]:
    comparison = report.comparison(check.suite, check.metric)
    if comparison is None:
        return [
            CheckResult(
                suite=check.suite,
                metric=check.metric,
                check="present",
                value=None,
                threshold=None,
                passed=False,
                detail=f"{check.suite}/{check.metric} was not evaluated; add it to the suite's metrics",
            )
        ]
    results: list[CheckResult] = []
    candidate = comparison.values.get("candidate")
    gain, low, high = _improvement(comparison)
    baseline = comparison.baseline

    if check.min_value is not None:
        value = candidate if candidate is not None else float("nan")
        ok = (value >= check.min_value) if comparison.higher_is_better else (value <= check.min_value)
        results.append(
            CheckResult(
                suite=check.suite,
                metric=check.metric,
                check="min_value",
                value=value,
                threshold=check.min_value,
                passed=bool(ok),
                borderline=_borderline(value, check.min_value, margin),
                detail=f"candidate {value:.4f} vs required {check.min_value:.4f}",
            )
        )
    if check.min_gain is not None:
        ok = comparison.called and gain >= check.min_gain
        results.append(
            CheckResult(
                suite=check.suite,
                metric=check.metric,
                check="min_gain",
                value=gain,
                threshold=check.min_gain,
                passed=bool(ok),
                borderline=_borderline(gain, check.min_gain, margin),
                detail=(
                    f"gain over {baseline} {gain:+.4f} vs required {check.min_gain:+.4f}"
                    if comparison.called
                    else f"only {comparison.n} examples: too few to call a gain"
                ),
            )
        )
    if check.require_significant:
        ok = comparison.called and low is not None and low > 0
        results.append(
            CheckResult(
                suite=check.suite,
                metric=check.metric,
                check="significant",
                value=low,
                threshold=0.0,
                passed=bool(ok),
                borderline=low is not None and high is not None and low <= 0 < high,
                detail=f"95% CI of the gain over {baseline}: [{_fmt(low)}, {_fmt(high)}]",
            )
        )
    if check.max_regression is not None:
        regression = -gain
        ok = regression <= check.max_regression + 1e-12
        results.append(
            CheckResult(
                suite=check.suite,
                metric=check.metric,
                check="max_regression",
                value=regression,
                threshold=check.max_regression,
                passed=bool(ok),
                borderline=_borderline(regression, check.max_regression, margin) and regression > 0,
                detail=f"regression vs {baseline} {regression:+.4f}, allowed {check.max_regression:.4f}",
            )
        )
    return results


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.4f}"


def evaluate_policy(
    policy: ApprovalPolicy, report: EvaluationReport, safety_suites: Iterable[str] = ()
) -> PolicyResult:
    """Run every check; ``needs_human`` says whether a person must decide."""
    checks = [*policy.checks, *implicit_safety_checks(policy, report, safety_suites)]
    results = [r for check in checks for r in _check(check, report, policy.doubt_margin)]
    passed = all(r.passed for r in results)
    if policy.mode is ApprovalMode.HUMAN:
        needs_human = True
    elif policy.mode is ApprovalMode.HUMAN_ON_DOUBT:
        needs_human = any(r.borderline for r in results)
    else:
        needs_human = False
    return PolicyResult(passed=passed, needs_human=needs_human, checks=results)
