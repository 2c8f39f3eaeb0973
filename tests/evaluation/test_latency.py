"""Latency is per example, never a batch's wall time copied to its members, and is not gated unless
the policy asks (issue 18 item 2)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tuneline.backends.base import Generation
from tuneline.backends.local.generation import LocalGenerator
from tuneline.backends.local.tiny_model import build_tiny_model
from tuneline.config import ApprovalPolicy, EvaluationConfig, GenerationConfig, MetricCheck
from tuneline.evaluation.cache import ResultCache
from tuneline.evaluation.runner import ModelUnderTest, evaluate_models
from tuneline.evaluation.suites import LoadedSuite
from tuneline.governance.policy import evaluate_policy
from tuneline.lineage import EvaluationReport, MetricComparison
from tuneline.records import ChatRecord, Message

PAIRS = [(f"question number {i} " + "word " * (i % 5), f"answer {i}") for i in range(20)]
CONFIG = EvaluationConfig(bootstrap_samples=200, min_examples=10)


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory: pytest.TempPathFactory) -> LocalGenerator:
    corpus = [p for p, _ in PAIRS] + [a for _, a in PAIRS]
    model_dir = build_tiny_model(tmp_path_factory.mktemp("latency-model") / "tiny", corpus, hidden_size=32,
                                 intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=2)
    generator = LocalGenerator(model_dir, label="base")
    yield generator
    generator.close()


def _records(n: int) -> list[ChatRecord]:
    return [
        ChatRecord(messages=(Message(role="user", content=p), Message(role="assistant", content=a)))
        for p, a in PAIRS[:n]
    ]


def test_local_batched_latency_is_the_batch_time_shared_by_its_members(tiny_generator: LocalGenerator) -> None:
    prompts = _records(6)
    started = time.perf_counter()
    generations = tiny_generator.generate(prompts, GenerationConfig(max_new_tokens=6, batch_size=4))
    wall = time.perf_counter() - started

    assert [g.batch_size for g in generations] == [4, 4, 4, 4, 2, 2]
    first, second = generations[:4], generations[4:]
    assert len({g.latency_s for g in first}) == 1 and len({g.latency_s for g in second}) == 1
    # Per-example latencies add up to the time generation took. Had each member carried its
    # batch's wall time, they would add up to ~4x (first batch) + 2x (second) that time.
    total = sum(g.latency_s for g in generations)
    assert 0 < total <= wall
    assert total >= 0.5 * wall  # the time is accounted for, not dropped


def test_one_at_a_time_each_answer_has_its_own_latency(tiny_generator: LocalGenerator) -> None:
    generations = tiny_generator.generate(_records(5), GenerationConfig(max_new_tokens=6, batch_size=1))
    assert [g.batch_size for g in generations] == [1] * 5
    assert len({g.latency_s for g in generations}) == 5


class TimedGenerator:
    """A model double that takes a different time for each answer, as a served model does."""

    label = "timed"

    def __init__(self, seconds: Sequence[float]) -> None:
        self.seconds = list(seconds)

    def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
        return [Generation(text="answer", latency_s=self.seconds[i], output_tokens=1) for i in range(len(prompts))]

    def close(self) -> None:
        pass


def _suite(make_suite: Callable[..., LoadedSuite], name: str = "task") -> LoadedSuite:
    return make_suite([(p, a) for p, a in PAIRS], name=name, metrics=("exact_match",))


def test_rows_keep_each_examples_latency_and_batch_size(
    make_suite: Callable[..., LoadedSuite], tmp_path: Path
) -> None:
    seconds = [0.01 * (i + 1) for i in range(len(PAIRS))]
    models = {
        "candidate": ModelUnderTest("cand", lambda: TimedGenerator(seconds)),
        "base": ModelUnderTest("base", lambda: TimedGenerator(seconds[::-1])),
    }
    result = evaluate_models(models, [_suite(make_suite)], CONFIG, cache=ResultCache(tmp_path / "cache"))

    candidate = [r for r in result.rows.to_pylist() if r["model"] == "candidate"]
    assert [r["latency_s"] for r in candidate] == seconds
    assert {r["batch_size"] for r in candidate} == {1}
    p50 = result.comparison("task", "latency_p50")
    p95 = result.comparison("task", "latency_p95")
    assert p50 is not None and p95 is not None
    assert p50.values["candidate"] == pytest.approx(np.percentile(seconds, 50))
    assert p95.values["candidate"] == pytest.approx(np.percentile(seconds, 95))
    assert p95.values["candidate"] > p50.values["candidate"]

    # the cache gives back the same per-example values
    again = evaluate_models(models, [_suite(make_suite)], CONFIG, cache=ResultCache(tmp_path / "cache"))
    assert all(again.rows.column("cached").to_pylist())
    assert again.rows.column("latency_s").to_pylist() == result.rows.column("latency_s").to_pylist()


def test_a_cache_entry_with_batch_latencies_is_regenerated(
    make_suite: Callable[..., LoadedSuite], tmp_path: Path
) -> None:
    suite = _suite(make_suite)
    cache = ResultCache(tmp_path / "cache")
    where = cache.put("cand", suite, CONFIG.generation, [Generation(text="a", latency_s=1.0)] * len(suite.records))
    old = pq.read_table(where).drop(["batch_size"])  # as written before latency was per example
    pq.write_table(old, where)
    assert cache.get("cand", suite, CONFIG.generation) is None


def _comparison(metric: str, candidate: float, baseline: float, suite: str = "safety") -> MetricComparison:
    return MetricComparison(
        suite=suite, metric=metric, values={"candidate": candidate, "base": baseline}, baseline="base",
        delta=candidate - baseline, ci_low=candidate - baseline - 0.01, ci_high=candidate - baseline + 0.01,
        n=100, higher_is_better=False, called=True,
    )


def _report(*comparisons: MetricComparison) -> EvaluationReport:
    return EvaluationReport(candidate_uri="s3://b/m", comparisons=list(comparisons), results_uri="s3://b/r.parquet")


def test_latency_and_length_are_reported_not_gated_on_a_safety_suite() -> None:
    # slower and longer: jitter and style, not a safety regression
    report = _report(
        _comparison("latency_p50", 0.012, 0.010),
        _comparison("latency_p95", 0.020, 0.011),
        _comparison("output_length", 90.0, 80.0),
    )
    result = evaluate_policy(ApprovalPolicy(), report, safety_suites=["safety"])
    assert result.passed
    assert result.checks == []


def test_a_policy_that_asks_gates_latency() -> None:
    report = _report(_comparison("latency_p95", 0.020, 0.011, suite="task"))
    policy = ApprovalPolicy(checks=[MetricCheck(suite="task", metric="latency_p95", max_regression=0.005)])
    result = evaluate_policy(policy, report)
    assert not result.passed
    (check,) = result.checks
    assert (check.metric, check.check) == ("latency_p95", "max_regression")
    assert check.value == pytest.approx(0.009)

