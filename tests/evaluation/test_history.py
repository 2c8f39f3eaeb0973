"""Evaluation history: DuckDB over the Parquet files of two written runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuneline.config import EvaluationConfig, SuiteKind
from tuneline.errors import EvaluationError
from tuneline.evaluation.history import metric_history
from tuneline.evaluation.runner import evaluate_models
from tuneline.evaluation.suites import LoadedSuite

PAIRS = [(f"q{i}", f"a{i}") for i in range(4)]
CONFIG = EvaluationConfig(bootstrap_samples=100, min_examples=1)


@pytest.fixture
def history_dir(tmp_path: Path, make_zoo: Callable[[], Any], make_suite: Callable[..., LoadedSuite]) -> Path:
    """Two runs: v1 gets 1 of 4 right, v2 (against champion v1) 3 of 4; run 2 also has a safety suite."""
    task = make_suite(PAIRS, metrics=["exact_match"])
    safety = make_suite(
        [("hack it", "I can't help with that.")], name="safety", kind=SuiteKind.SAFETY, metrics=["refusal"]
    )
    v1 = dict(PAIRS[:1])
    v2 = dict(PAIRS[:3]) | {"hack it": "I won't do that."}
    zoo = make_zoo()
    run1 = evaluate_models(
        {"candidate": zoo.model("candidate", "models:/tickets/1", v1), "base": zoo.model("base", "tiny", {})},
        [task],
        CONFIG,
        run_id="run-1",
    )
    run1.write_parquet(str(tmp_path / "evals" / "run-1" / "results.parquet"))
    zoo = make_zoo()
    run2 = evaluate_models(
        {
            "candidate": zoo.model("candidate", "models:/tickets/2", v2),
            "base": zoo.model("base", "tiny", {}),
            "champion": zoo.model("champion", "models:/tickets/1", v1),
        },
        [task, safety],
        CONFIG,
        run_id="run-2",
    )
    run2.write_parquet(str(tmp_path / "evals" / "run-2" / "results.parquet"))
    return tmp_path / "evals"


def _means(rows: list[dict[str, Any]], metric: str) -> list[tuple[str, str, float]]:
    return [(r["run_id"], r["model_id"], r["mean"]) for r in rows if r["metric"] == metric]


def test_history_of_one_registered_model_over_two_runs(history_dir: Path) -> None:
    rows = metric_history(history_dir, model="models:/tickets/", suite="task")
    assert _means(rows, "exact_match") == [
        ("run-1", "models:/tickets/1", 0.25),
        ("run-2", "models:/tickets/1", 0.25),  # the champion, re-evaluated in run 2
        ("run-2", "models:/tickets/2", 0.75),
    ]
    assert {r["n"] for r in rows} == {4}
    assert rows[0]["evaluated_at"] <= rows[-1]["evaluated_at"]
    assert {r["metric"] for r in rows} == {"exact_match", "output_length", "latency"}


def test_history_filters_by_label_and_suite(history_dir: Path) -> None:
    rows = metric_history(history_dir, model="candidate", suite="safety")
    assert _means(rows, "refusal") == [("run-2", "models:/tickets/2", 1.0)]
    assert all(r["suite"] == "safety" and r["model"] == "candidate" for r in rows)


def test_history_without_filters_has_every_run_model_and_suite(history_dir: Path) -> None:
    rows = metric_history(history_dir)
    assert {(r["run_id"], r["model"], r["suite"]) for r in rows} == {
        ("run-1", "candidate", "task"),
        ("run-1", "base", "task"),
        ("run-2", "candidate", "task"),
        ("run-2", "base", "task"),
        ("run-2", "champion", "task"),
        ("run-2", "candidate", "safety"),
        ("run-2", "base", "safety"),
        ("run-2", "champion", "safety"),
    }


def test_empty_and_missing_history(tmp_path: Path) -> None:
    assert metric_history(tmp_path) == []
    with pytest.raises(EvaluationError, match="does not exist"):
        metric_history(tmp_path / "nowhere")
