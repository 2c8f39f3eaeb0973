"""The paired bootstrap on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from tuneline.errors import EvaluationError
from tuneline.evaluation import statistics
from tuneline.evaluation.statistics import compare_paired, paired_bootstrap


def test_constant_difference_gives_a_degenerate_interval_at_that_value() -> None:
    b = np.linspace(0.0, 1.0, 50)
    delta, low, high = paired_bootstrap(b + 0.3, b, n_resamples=500, seed=1)
    assert delta == pytest.approx(0.3)
    assert low == pytest.approx(0.3)
    assert high == pytest.approx(0.3)


def test_zero_mean_symmetric_noise_gives_an_interval_containing_zero() -> None:
    rng = np.random.default_rng(7)
    b = rng.uniform(size=200)
    noise = rng.normal(size=100)
    # Exactly symmetric: every +e has a matching -e, so the true and sample mean difference are 0.
    a = b + np.concatenate([noise, -noise])
    delta, low, high = paired_bootstrap(a, b, n_resamples=2000, seed=3)
    assert delta == pytest.approx(0.0, abs=1e-12)
    assert low < 0.0 < high


def test_large_sample_with_a_half_point_shift_excludes_zero() -> None:
    rng = np.random.default_rng(11)
    b = rng.normal(size=2000)
    a = b + 0.5 + rng.normal(size=2000)
    delta, low, high = paired_bootstrap(a, b, n_resamples=1000, seed=0)
    assert 0.0 < low < delta < high
    # se ~ 1/sqrt(2000) ~ 0.022: the interval is about +-0.044 around ~0.5
    assert delta == pytest.approx(0.5, abs=0.1)
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(2000), rel=0.2)


def test_percentile_statistic_on_a_constant_shift() -> None:
    b = np.arange(100, dtype=float) / 100
    delta, low, high = paired_bootstrap(b + 1.0, b, n_resamples=300, seed=0, percentile=95)
    assert (delta, low, high) == pytest.approx((1.0, 1.0, 1.0))


def test_same_seed_same_interval() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert paired_bootstrap(a, b, 500, seed=5) == paired_bootstrap(a, b, 500, seed=5)
    assert paired_bootstrap(a, b, 500, seed=5) != paired_bootstrap(a, b, 500, seed=6)


def test_chunked_resampling_matches_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=30), rng.normal(size=30)
    one_pass = paired_bootstrap(a, b, 400, seed=9)
    monkeypatch.setattr(statistics, "_MAX_CELLS", 30 * 7)  # 7 resamples per chunk
    assert paired_bootstrap(a, b, 400, seed=9) == pytest.approx(one_pass)


def test_too_few_examples_are_not_called() -> None:
    result = compare_paired([1.0, 1.0, 0.0], [0.0, 0.0, 0.0], min_examples=10)
    assert result.called is False
    assert result.n == 3
    assert result.delta == pytest.approx(2 / 3)
    assert result.low is None and result.high is None


def test_enough_examples_are_called_with_an_interval() -> None:
    result = compare_paired([1.0] * 10, [0.0] * 10, min_examples=10, n_resamples=200)
    assert result.called is True
    assert (result.delta, result.low, result.high) == pytest.approx((1.0, 1.0, 1.0))


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        pytest.param([1.0, 2.0], [1.0], "one length", id="length-mismatch"),
        pytest.param([], [], "empty", id="empty"),
        pytest.param([1.0, float("nan")], [1.0, 2.0], "NaN", id="nan"),
    ],
)
def test_bad_inputs_are_refused(a: list[float], b: list[float], message: str) -> None:
    with pytest.raises(EvaluationError, match=message):
        paired_bootstrap(a, b)


def test_confidence_must_be_a_probability() -> None:
    with pytest.raises(EvaluationError, match="confidence"):
        paired_bootstrap([1.0], [0.0], confidence=95)
