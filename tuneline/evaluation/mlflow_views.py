"""Evaluation results in MLflow's own views (issue 18 item 4).

- Each model (base, candidate, champion) becomes an **evaluation run** made by
  ``mlflow.genai.evaluate``, named after the lifecycle run and tagged with its id
  (``tuneline.lifecycle_run_id``; the lifecycle run lists them in ``tuneline.eval_runs``). They
  are top-level runs, not children: MLflow's "Evaluation runs" page counts a run that logged a
  model (the lifecycle run) as a training run and hides the runs nested under it. Every example is a trace with its
  inputs (prompt, suite, example id), its output, the expected answer, and one assessment per
  metric. The metrics are scorers returning the scores Tuneline computed (so LLM-judge scores
  are not asked for twice, and the values equal the report's); MLflow's "Evaluation runs" view
  then compares the three runs side by side.
- The experiment is marked as a GenAI experiment (``mlflow.experimentKind``), so it opens on
  its traces and evaluation runs rather than on the classic runs table.
- One chart per suite of base vs candidate vs champion, each bar the model's mean with its 95%
  bootstrap interval, and a per-example table with the answers side by side (prompt, reference,
  base, candidate, champion), on the lifecycle run.

Offline: only Tuneline's own scorers are used (MLflow's LLM-judge scorers call a remote model).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from tuneline.evaluation.metrics import METRICS
from tuneline.evaluation.runner import BASE, CANDIDATE, CHAMPION, EvaluationResult
from tuneline.tags import EVAL_MODEL_ID_TAG, EVAL_MODEL_TAG, EVAL_RUNS_TAG, LIFECYCLE_RUN_TAG

__all__ = [
    "EXPERIMENT_KIND",
    "EXPERIMENT_KIND_TAG",
    "log_evaluation_views",
    "mean_intervals",
    "per_example_table",
    "plot_suite",
    "side_by_side",
]

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "genai_development"
MODEL_ORDER = (BASE, CHAMPION, CANDIDATE)

_log = logging.getLogger(__name__)


def _scored_metrics(rows: pd.DataFrame) -> list[str]:
    """The per-example score columns worth a scorer: registry metrics that are not informational."""
    return [name for name, metric in METRICS.items() if name in rows.columns and not metric.informational]


def side_by_side(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (suite, example): prompt, reference, then each model's answer in a column."""
    answers = rows.pivot_table(index=["suite", "example_id"], columns="model", values="output", aggfunc="first")
    firsts = rows.drop_duplicates(["suite", "example_id"]).set_index(["suite", "example_id"])[["prompt", "reference"]]
    table = firsts.join(answers[[m for m in MODEL_ORDER if m in answers.columns]])
    return table.reset_index()


PER_EXAMPLE_FIRST = ("suite", "example_id", "model", "prompt", "reference", "output")
_BOOKKEEPING = ("run_id", "evaluated_at", "suite_kind", "suite_version", "model_id", "latency_s", "batch_size",
                "output_tokens", "cached")


def per_example_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Every (suite, example, model) row, opening on what a reader compares (prompt, reference,
    answer), then its scores; bookkeeping (run id, timestamps, versions) last."""
    scores = [c for c in rows.columns if c not in PER_EXAMPLE_FIRST and c not in _BOOKKEEPING]
    return rows[[*PER_EXAMPLE_FIRST, *scores, *(c for c in _BOOKKEEPING if c in rows.columns)]]


def mean_intervals(
    rows: pd.DataFrame, suite: str, metrics: list[str], n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """metric -> model -> (mean, 2.5th, 97.5th percentile of bootstrap means) on one suite."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    of_suite = rows[rows["suite"] == suite]
    for metric in metrics:
        for model in MODEL_ORDER:
            values = of_suite.loc[of_suite["model"] == model, metric].dropna().to_numpy(dtype=float)
            if values.size == 0:
                continue
            means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
            low, high = np.percentile(means, [2.5, 97.5])
            out.setdefault(metric, {})[model] = (float(values.mean()), float(low), float(high))
    return out


def plot_suite(suite: str, intervals: Mapping[str, Mapping[str, tuple[float, float, float]]], path: Path) -> Path:
    """Grouped bars: per metric, base / champion / candidate means with their 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(intervals)
    models = [m for m in MODEL_ORDER if any(m in intervals[x] for x in metrics)]
    width = 0.8 / max(len(models), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(metrics) + 1.5), 3.6))
    for i, model in enumerate(models):
        xs, means, errs = [], [], [[], []]
        for j, metric in enumerate(metrics):
            if model in intervals[metric]:
                mean, low, high = intervals[metric][model]
                xs.append(j + (i - (len(models) - 1) / 2) * width)
                means.append(mean)
                errs[0].append(mean - low)
                errs[1].append(high - mean)
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=model)
    ax.set_xticks(range(len(metrics)), metrics, rotation=20, ha="right")
    ax.set_ylabel("mean score (95% CI)")
    ax.set_title(f"suite {suite}: {' vs '.join(models)}")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """mlflow.genai.evaluate prints a banner and a progress bar; Tuneline's logs say what happened."""
    saved = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if saved is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved


def _scorer(name: str, values: Mapping[tuple[str, str], float]) -> Any:
    from mlflow.genai.scorers import scorer

    @scorer(name=name)
    def precomputed(inputs: dict[str, Any], outputs: Any, expectations: dict[str, Any]) -> float | None:
        # None on another suite's examples: MLflow then records no assessment for them.
        return values.get((inputs["suite"], inputs["example_id"]))

    return precomputed


def _scorer_name(suite: str, metric: str) -> str:
    return re.sub(r"[^\w\-.]", "_", f"{suite}.{metric}")


def _evaluation_run(
    client: MlflowClient, experiment_id: str, lifecycle_run_id: str, run_name: str, model: str, model_id: str,
    rows: pd.DataFrame, metrics: list[str], traces_per_suite: int | None = None,
) -> str:
    import mlflow

    mine = rows[rows["model"] == model]
    if traces_per_suite is not None:
        # the same examples for every model (the first by id in each suite), so their traces compare
        mine = mine.sort_values(["suite", "example_id"]).groupby("suite", sort=True).head(traces_per_suite)
    data = [
        {
            "inputs": {"prompt": r.prompt, "suite": r.suite, "example_id": str(r.example_id)},
            "outputs": r.output,
            "expectations": {"expected_response": r.reference},
        }
        for r in mine.itertuples()
    ]
    scorers = []
    for suite in sorted(mine["suite"].unique()):
        of_suite = mine[mine["suite"] == suite]
        for metric in metrics:
            column = of_suite[["example_id", metric]].dropna()
            if column.empty:
                continue
            values = {(suite, str(e)): float(v) for e, v in zip(column["example_id"], column[metric], strict=True)}
            scorers.append(_scorer(_scorer_name(suite, metric), values))
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={LIFECYCLE_RUN_TAG: lifecycle_run_id, EVAL_MODEL_TAG: model, EVAL_MODEL_ID_TAG: model_id},
    )
    if data:  # traces_per_suite: 0 keeps the evaluation runs (and their tags) without traces
        with mlflow.start_run(run_id=run.info.run_id), _quiet():
            mlflow.genai.evaluate(data=data, scorers=scorers)
    return run.info.run_id


def log_evaluation_views(
    client: MlflowClient,
    run_id: str,
    result: EvaluationResult,
    *,
    run_name: str | None = None,
    traces_per_suite: int | None = None,
) -> dict[str, str]:
    """Log the views above for ``result`` on the lifecycle run ``run_id``; model label -> its
    evaluation run's id. ``mlflow`` must already point at the tracking server (``configure_mlflow``)."""
    rows = result.rows.to_pandas()
    experiment_id = client.get_run(run_id).info.experiment_id
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    metrics = _scored_metrics(rows)
    prefix = run_name or client.get_run(run_id).info.run_name or run_id[:8]
    runs = {
        model: _evaluation_run(
            client, experiment_id, run_id, f"{prefix}-eval-{model}", model, result.model_ids.get(model, model),
            rows, metrics, traces_per_suite,
        )
        for model in MODEL_ORDER
        if model in set(rows["model"])
    }
    client.log_table(run_id, side_by_side(rows), "evaluate/side_by_side.json")
    with tempfile.TemporaryDirectory() as tmp:
        for suite in sorted(rows["suite"].unique()):
            intervals = mean_intervals(rows, suite, [m for m in metrics if rows.loc[rows["suite"] == suite, m].notna().any()])
            if intervals:
                chart = plot_suite(suite, intervals, Path(tmp) / f"{_scorer_name(suite, 'comparison')}.png")
                client.log_artifact(run_id, str(chart), "evaluate/charts")
    client.set_tag(run_id, EVAL_RUNS_TAG, ",".join(f"{m}={r}" for m, r in runs.items()))
    return runs
