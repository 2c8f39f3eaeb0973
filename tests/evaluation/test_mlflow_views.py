"""Evaluation results in MLflow's own views: evaluation runs of traces with scores, the experiment
kind, per-suite charts with intervals and the answers side by side (issue 18 item 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tuneline.config import EvaluationConfig, SuiteKind
from tuneline.evaluation.mlflow_views import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    log_evaluation_views,
    mean_intervals,
    per_example_table,
    side_by_side,
)
from tuneline.evaluation.runner import evaluate_models
from tuneline.evaluation.suites import LoadedSuite
from tuneline.settings import Settings
from tuneline.tags import LIFECYCLE_RUN_TAG

PAIRS = [(f"question {i}", f"answer {i}") for i in range(12)]
RIGHT = dict(PAIRS)
HALF = {p: (a if i % 2 == 0 else "no idea") for i, (p, a) in enumerate(PAIRS)}
SAFETY = [(f"how do I break in {i}", "I can't help with that.") for i in range(4)]
CONFIG = EvaluationConfig(bootstrap_samples=200, min_examples=4)


@pytest.fixture
def result(zoo: Any, make_suite: Callable[..., LoadedSuite]):
    suites = [
        make_suite(PAIRS, metrics=("exact_match", "token_f1")),
        make_suite(SAFETY, name="safety", kind=SuiteKind.SAFETY, metrics=("refusal",)),
    ]
    refusals = {p: a for p, a in SAFETY}
    models = {
        "candidate": zoo.model("candidate", "cand", {**RIGHT, **refusals}),
        "champion": zoo.model("champion", "champ", {**HALF, **refusals}),
        "base": zoo.model("base", "base", {}),
    }
    return evaluate_models(models, suites, CONFIG)


def test_side_by_side_has_one_row_per_example_with_every_models_answer(result) -> None:
    table = side_by_side(result.rows.to_pandas())
    assert list(table.columns) == ["suite", "example_id", "prompt", "reference", "base", "champion", "candidate"]
    assert len(table) == len(PAIRS) + len(SAFETY)
    row = table[(table["suite"] == "task") & (table["prompt"].str.endswith("question 1"))].iloc[0]
    assert (row["reference"], row["candidate"], row["champion"], row["base"]) == ("answer 1", "answer 1", "no idea", "")


def test_the_per_example_table_opens_on_prompt_reference_and_answer(result) -> None:
    rows = result.rows.to_pandas()
    table = per_example_table(rows)
    assert list(table.columns[:6]) == ["suite", "example_id", "model", "prompt", "reference", "output"]
    assert set(table.columns) == set(rows.columns) and len(table) == len(rows)
    assert list(table.columns).index("run_id") > list(table.columns).index("exact_match")


def test_intervals_hold_each_models_mean(result) -> None:
    intervals = mean_intervals(result.rows.to_pandas(), "task", ["exact_match"])
    cand, champ, base = (intervals["exact_match"][m] for m in ("candidate", "champion", "base"))
    assert cand == (1.0, 1.0, 1.0)
    assert champ[0] == 0.5 and champ[1] < 0.5 < champ[2]
    assert base[0] == 0.0


@pytest.mark.service
@pytest.mark.slow
def test_each_model_is_an_evaluation_run_of_scored_traces(stack_settings: Settings, result) -> None:
    import mlflow

    from tuneline.stages.context import StageContext
    from tuneline.storage.tracking import get_or_create_experiment

    client = StageContext(stack_settings).mlflow
    experiment_id = get_or_create_experiment("views-test", client)
    parent = client.create_run(experiment_id, run_name="tickets-20261202").info.run_id

    runs = log_evaluation_views(client, parent, result)

    assert set(runs) == {"base", "champion", "candidate"}
    assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    for model, run_id in runs.items():
        run = client.get_run(run_id)
        # top-level (MLflow's Evaluation runs page hides runs nested under one that logged a model)
        assert run.data.tags[LIFECYCLE_RUN_TAG] == parent and "mlflow.parentRunId" not in run.data.tags
        assert run.info.run_name == f"tickets-20261202-eval-{model}"
        traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")
        assert len(traces) == len(PAIRS) + len(SAFETY)
        scores = {a.name: a.value for a in traces[0].info.assessments}
        assert "expected_response" in scores
    candidate = client.get_run(runs["candidate"]).data.metrics
    champion = client.get_run(runs["champion"]).data.metrics
    assert candidate["task.exact_match/mean"] == 1.0 and champion["task.exact_match/mean"] == 0.5
    assert champion["safety.refusal/mean"] == 1.0

    artifacts = {a.path for a in client.list_artifacts(parent, "evaluate")}
    assert "evaluate/side_by_side.json" in artifacts
    charts = {a.path for a in client.list_artifacts(parent, "evaluate/charts")}
    assert charts == {"evaluate/charts/task.comparison.png", "evaluate/charts/safety.comparison.png"}

    # a cap on the traces logs the same first examples of each suite for every model
    capped = log_evaluation_views(client, parent, result, run_name="capped", traces_per_suite=1)
    traced = {}
    for model, run_id in capped.items():
        traces = mlflow.search_traces(locations=[experiment_id], run_id=run_id, return_type="list")
        traced[model] = sorted(
            (t.data.request if isinstance(t.data.request, str) else str(t.data.request)) for t in traces
        )
        assert len(traces) == 2, model  # one per suite: task and safety
    assert traced["base"] == traced["candidate"] == traced["champion"]
