"""Evaluate a candidate against the base model and the champion on the configured suites.

Every model answers the same prompts with the same generation settings. Models are loaded one at
a time -- each factory is called only after the previous model was closed -- so evaluating three
models needs the memory of one. Answers come from the :class:`~tuneline.evaluation.cache.ResultCache`
when the same model already answered the same suite with the same settings, and the model is not
loaded at all when every suite is cached.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from tuneline.backends.base import Generation, TextGenerator
from tuneline.config import EvaluationConfig
from tuneline.errors import ConfigError, EvaluationError, TunelineError
from tuneline.evaluation.cache import ResultCache
from tuneline.evaluation.metrics import (
    JUDGE_METRIC,
    METRICS,
    Metric,
    aggregate_percentile,
    comparison_names,
    validate_suite_metrics,
)
from tuneline.evaluation.statistics import compare_paired
from tuneline.evaluation.suites import LoadedSuite, render_prompt
from tuneline.lineage import MetricComparison
from tuneline.storage.s3 import ObjectStore, local_path_or_none

__all__ = [
    "ALWAYS_MEASURED",
    "BASE",
    "CANDIDATE",
    "CHAMPION",
    "Aggregate",
    "EvaluationResult",
    "Judge",
    "ModelUnderTest",
    "evaluate_models",
    "suite_metrics",
]

CANDIDATE, BASE, CHAMPION = "candidate", "base", "champion"

ALWAYS_MEASURED = ("output_length", "latency")
"""Informational metrics every suite reports, whatever its config lists."""

_FIXED_COLUMNS = [
    ("run_id", pa.string()),
    ("evaluated_at", pa.timestamp("us", tz="UTC")),
    ("suite", pa.string()),
    ("suite_kind", pa.string()),
    ("suite_version", pa.string()),
    ("example_id", pa.string()),
    ("model", pa.string()),
    ("model_id", pa.string()),
    ("prompt", pa.string()),
    ("reference", pa.string()),
    ("output", pa.string()),
    ("latency_s", pa.float64()),
    ("batch_size", pa.int64()),
    ("output_tokens", pa.int64()),
    ("cached", pa.bool_()),
]


@dataclass(frozen=True)
class ModelUnderTest:
    """A model to evaluate. ``model_id`` must change whenever the weights do (it keys the cache):
    a registry version URI, or the training job id; ``factory`` loads it only when needed."""

    model_id: str
    factory: Callable[[], TextGenerator]


class Aggregate(BaseModel):
    """One model's aggregate of one metric on one suite."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    suite: str
    model: str
    model_id: str
    metric: str
    value: float
    n: int


@dataclass(frozen=True)
class EvaluationResult:
    """Per-example rows, per-model aggregates and candidate-vs-baseline comparisons."""

    run_id: str
    evaluated_at: datetime
    baseline: str
    rows: pa.Table
    aggregates: tuple[Aggregate, ...]
    comparisons: tuple[MetricComparison, ...]
    generated: Mapping[str, int] = field(default_factory=dict)
    """Model label -> examples it answered in this run (0 when every answer came from the cache)."""
    model_ids: Mapping[str, str] = field(default_factory=dict)

    def comparison(self, suite: str, metric: str) -> MetricComparison | None:
        return next((c for c in self.comparisons if c.suite == suite and c.metric == metric), None)

    def summary(self) -> dict[str, Any]:
        """Per suite and metric: each model's value, the delta, its interval (None when not
        computed), n, which way is better and whether a difference is called
        (``tuneline evaluate --json``'s ``suites``)."""
        out: dict[str, Any] = {}
        for c in self.comparisons:
            out.setdefault(c.suite, {})[c.metric] = {
                "values": dict(c.values),
                "baseline": c.baseline,
                "delta": c.delta,
                "ci": [c.ci_low, c.ci_high] if c.ci_low is not None else None,
                "n": c.n,
                "higher_is_better": c.higher_is_better,
                "called": c.called,
            }
        return out

    def mlflow_metrics(self) -> dict[str, float]:
        """The deltas the gate decides on, keyed ``<suite>/delta/<metric>``, for the lifecycle run.

        Each model's own values live on its evaluation run (``mlflow_views``), under the same scorer
        names for every model, so MLflow's run comparison shows base, candidate and champion side by
        side; repeating them here made one single-point chart per model and metric."""
        return {f"{_key(c.suite)}/delta/{c.metric}": c.delta for c in self.comparisons}

    def parquet_bytes(self) -> bytes:
        sink = pa.BufferOutputStream()
        pq.write_table(self.rows, sink)
        return sink.getvalue().to_pybytes()

    def write_parquet(self, destination: str, store: ObjectStore | None = None) -> str:
        """Write the per-example rows to a local file or an ``s3://`` key; returns where."""
        path = local_path_or_none(destination)
        if path is None:
            if store is None:
                raise EvaluationError(f"{destination} is in S3: pass an ObjectStore to write it")
            return store.put_bytes(
                destination, self.parquet_bytes(), content_type="application/vnd.apache.parquet"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(self.rows, path)
        return str(path)


def _key(name: str) -> str:
    # MLflow metric keys allow letters, digits, '_', '-', '.', ' ' and '/'.
    return re.sub(r"[^\w\-. /]", "_", name)


def suite_metrics(suite: LoadedSuite) -> list[Metric]:
    """The metrics a suite reports: its configured ones, then :data:`ALWAYS_MEASURED`."""
    names = list(dict.fromkeys([*suite.config.metrics, *ALWAYS_MEASURED]))
    return [METRICS[name] for name in names]


def _check_inputs(models: Mapping[str, ModelUnderTest], suites: Sequence[LoadedSuite]) -> str:
    if CANDIDATE not in models:
        raise ConfigError(
            f"evaluation needs a model labelled {CANDIDATE!r}; got {', '.join(models) or 'none'}"
        )
    baseline = CHAMPION if CHAMPION in models else BASE
    if baseline not in models:
        raise ConfigError(f"evaluation needs a {BASE!r} or {CHAMPION!r} model to compare the candidate with")
    if not suites:
        raise ConfigError("evaluation needs at least one suite")
    names = [s.name for s in suites]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"suite names must be unique; repeated: {', '.join(duplicated)}")
    for suite in suites:
        validate_suite_metrics(suite.config)
    return baseline


def _generate_all(
    models: Mapping[str, ModelUnderTest],
    suites: Sequence[LoadedSuite],
    config: EvaluationConfig,
    cache: ResultCache | None,
) -> tuple[dict[tuple[str, str], tuple[list[Generation], bool]], dict[str, int]]:
    answers: dict[tuple[str, str], tuple[list[Generation], bool]] = {}
    generated: dict[str, int] = {}
    for label, model in models.items():
        pending = []
        for suite in suites:
            hit = cache.get(model.model_id, suite, config.generation) if cache is not None else None
            if hit is None:
                pending.append(suite)
            else:
                answers[(label, suite.name)] = (hit, True)
        generated[label] = sum(len(s.records) for s in pending)
        if not pending:
            continue
        generator = model.factory()
        try:
            for suite in pending:
                outputs = list(generator.generate(suite.records, config.generation))
                if len(outputs) != len(suite.records):
                    raise EvaluationError(
                        f"model {label} ({model.model_id}) returned {len(outputs)} answers for the "
                        f"{len(suite.records)} prompts of suite {suite.name!r}"
                    )
                if cache is not None:
                    cache.put(model.model_id, suite, config.generation, outputs)
                answers[(label, suite.name)] = (outputs, False)
        finally:
            # Freed before the next model loads, also when this one failed half-way.
            generator.close()
    return answers, generated


Judge = Callable[[Sequence[tuple[str, str, str]]], Sequence[float]]
"""Scores (prompt, answer, reference) triples in one batch, 0..1: the ``judge`` metric's scorer."""


def _score(
    suite: LoadedSuite, metric: Metric, generations: Sequence[Generation], label: str, judge: Judge | None = None
) -> np.ndarray:
    if metric.name == JUDGE_METRIC:
        if judge is None:
            raise ConfigError(f"suite {suite.name!r} asks for the judge metric but evaluation.judge is not set")
        items = [(render_prompt(r), g.text, r.answer) for r, g in zip(suite.records, generations, strict=True)]
        return np.asarray(judge(items), dtype=np.float64)
    scores = np.empty(len(generations), dtype=np.float64)
    for i, (record, example_id, gen) in enumerate(
        zip(suite.records, suite.example_ids, generations, strict=True)
    ):
        try:
            scores[i] = metric.score(
                record.answer, gen.text, json_schema=suite.config.json_schema, latency_s=gen.latency_s
            )
        except TunelineError as exc:
            raise EvaluationError(f"suite {suite.name!r}, example {example_id} ({label}): {exc}") from exc
    return scores


def _aggregate(scores: np.ndarray, aggregate: str) -> float:
    percentile = aggregate_percentile(aggregate)
    return float(scores.mean() if percentile is None else np.percentile(scores, percentile))


def evaluate_models(
    models: Mapping[str, ModelUnderTest],
    suites: Sequence[LoadedSuite],
    config: EvaluationConfig,
    cache: ResultCache | None = None,
    *,
    run_id: str | None = None,
    judge: Judge | None = None,
) -> EvaluationResult:
    """Answer every suite with every model, score the answers and compare the candidate.

    ``models`` is keyed by label: ``candidate`` is required, and the deltas are taken against
    ``champion`` when present, else ``base``. Other labels are evaluated and reported without
    deltas. ``judge`` scores the ``judge`` metric (an LLM judge; see ``BedrockJudge``). Raises
    ``ConfigError`` for bad inputs and ``EvaluationError`` when a model or metric fails.
    """
    baseline = _check_inputs(models, suites)
    run_id = run_id or uuid.uuid4().hex
    evaluated_at = datetime.now(UTC)
    answers, generated = _generate_all(models, suites, config, cache)

    columns: dict[str, list[Any]] = {name: [] for name, _ in _FIXED_COLUMNS}
    metric_names = list(dict.fromkeys(m.name for s in suites for m in suite_metrics(s)))
    for name in metric_names:
        columns[name] = []
    aggregates: list[Aggregate] = []
    comparisons: list[MetricComparison] = []

    for suite in suites:
        metrics = suite_metrics(suite)
        scores: dict[tuple[str, str], np.ndarray] = {}
        for label, model in models.items():
            outputs, cached = answers[(label, suite.name)]
            for metric in metrics:
                scores[(label, metric.name)] = _score(suite, metric, outputs, label, judge)
            n = len(outputs)
            columns["run_id"] += [run_id] * n
            columns["evaluated_at"] += [evaluated_at] * n
            columns["suite"] += [suite.name] * n
            columns["suite_kind"] += [suite.config.kind.value] * n
            columns["suite_version"] += [suite.version] * n
            columns["example_id"] += list(suite.example_ids)
            columns["model"] += [label] * n
            columns["model_id"] += [model.model_id] * n
            columns["prompt"] += [render_prompt(r) for r in suite.records]
            columns["reference"] += [r.answer for r in suite.records]
            columns["output"] += [g.text for g in outputs]
            columns["latency_s"] += [g.latency_s for g in outputs]
            columns["batch_size"] += [g.batch_size for g in outputs]
            columns["output_tokens"] += [g.output_tokens for g in outputs]
            columns["cached"] += [cached] * n
            for name in metric_names:
                values = scores.get((label, name))
                columns[name] += values.tolist() if values is not None else [None] * n

        for metric in metrics:
            for aggregate, name in zip(metric.aggregates, comparison_names(metric), strict=True):
                values = {}
                for label, model in models.items():
                    values[label] = _aggregate(scores[(label, metric.name)], aggregate)
                    aggregates.append(
                        Aggregate(
                            suite=suite.name,
                            model=label,
                            model_id=model.model_id,
                            metric=name,
                            value=values[label],
                            n=len(suite.records),
                        )
                    )
                diff = compare_paired(
                    scores[(CANDIDATE, metric.name)],
                    scores[(baseline, metric.name)],
                    min_examples=config.min_examples,
                    n_resamples=config.bootstrap_samples,
                    seed=config.seed,
                    percentile=aggregate_percentile(aggregate),
                )
                comparisons.append(
                    MetricComparison(
                        suite=suite.name,
                        metric=name,
                        values=values,
                        baseline=baseline,
                        delta=diff.delta,
                        ci_low=diff.low,
                        ci_high=diff.high,
                        n=diff.n,
                        higher_is_better=metric.higher_is_better_on(suite.config.kind),
                        called=diff.called,
                    )
                )

    schema = pa.schema([*_FIXED_COLUMNS, *((name, pa.float64()) for name in metric_names)])
    return EvaluationResult(
        run_id=run_id,
        evaluated_at=evaluated_at,
        baseline=baseline,
        rows=pa.Table.from_pydict(columns, schema=schema),
        aggregates=tuple(aggregates),
        comparisons=tuple(comparisons),
        generated=generated,
        model_ids={label: m.model_id for label, m in models.items()},
    )
