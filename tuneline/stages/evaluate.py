"""Stage 3, evaluate: candidate vs base vs the current champion, on every configured suite."""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Metric

from tuneline.backends.base import TextGenerator
from tuneline.config import BedrockTuneConfig, RunConfig, SuiteKind
from tuneline.data.prepare import read_split
from tuneline.errors import EvaluationError
from tuneline.evaluation.report import plot_comparisons, render_report
from tuneline.evaluation.runner import LoadedSuite, ResultCache, evaluate_models, load_suite_file
from tuneline.governance.registry import ModelRegistry
from tuneline.lineage import DatasetVersion, EvaluationReport, TrainedModel
from tuneline.stages.context import StageContext
from tuneline.storage.tracking import run_url

__all__ = ["EvaluateOutcome", "MODEL_URI_TAG", "BASE_MODEL_TAG", "load_suites", "run_evaluate"]

MODEL_URI_TAG = "tuneline.model_uri"
BASE_MODEL_TAG = "tuneline.base_model"
BACKEND_TAG = "tuneline.backend"


@dataclass(frozen=True)
class EvaluateOutcome:
    report: EvaluationReport
    report_markdown: str
    summary: dict[str, dict[str, float]]


def load_suites(ctx: StageContext, config: RunConfig, dataset: DatasetVersion) -> list[LoadedSuite]:
    suites = []
    for suite in config.evaluation.suites:
        if suite.source is None:
            if suite.kind is not SuiteKind.TASK:
                raise EvaluationError(f"suite {suite.name!r} ({suite.kind}) needs a 'source' JSONL file")
            records = read_split(ctx.store, dataset.uri, "test")
            suites.append(LoadedSuite.from_records(suite, records))
        else:
            suites.append(load_suite_file(suite, suite.source, ctx.store))
    return suites


def _generator_factory(
    ctx: StageContext, config: RunConfig, label: str, model_uri: str | None, base_model: str
) -> Callable[[], TextGenerator]:
    if isinstance(config.tune, BedrockTuneConfig):
        from tuneline.backends.bedrock_runtime import BedrockGenerator

        return lambda: BedrockGenerator(ctx.settings, model_id=model_uri or base_model, label=label)
    from tuneline.backends.local_generation import LocalGenerator

    return lambda: LocalGenerator.from_uris(
        label=label, base_model=base_model, model_uri=model_uri, settings=ctx.settings, store=ctx.store
    )


def run_evaluate(
    ctx: StageContext, config: RunConfig, dataset: DatasetVersion, candidate: TrainedModel
) -> EvaluateOutcome:
    registry = ModelRegistry(ctx.mlflow)
    champion = registry.champion(config.name) if config.evaluation.compare_with_champion else None
    factories = {
        "candidate": _generator_factory(ctx, config, "candidate", candidate.model_uri, candidate.base_model),
        "base": _generator_factory(ctx, config, "base", None, candidate.base_model),
    }
    model_ids = {"candidate": candidate.job_id, "base": f"base:{candidate.base_model}"}
    champion_version = None
    if champion is not None:
        champion_version = str(champion.version)
        tags = champion.tags or {}
        if MODEL_URI_TAG not in tags:
            raise EvaluationError(
                f"champion v{champion_version} of {config.name!r} has no {MODEL_URI_TAG} tag; "
                "it was not registered by Tuneline and cannot be evaluated"
            )
        factories["champion"] = _generator_factory(
            ctx, config, "champion", tags[MODEL_URI_TAG], tags.get(BASE_MODEL_TAG, candidate.base_model)
        )
        model_ids["champion"] = f"{config.name}/v{champion_version}"

    suites = load_suites(ctx, config, dataset)
    cache = ResultCache(ctx.store, prefix=f"evals/{config.name}/cache")
    result = evaluate_models(factories, suites, config.evaluation, cache=cache, model_ids=model_ids)

    stamp = time.strftime("%Y%m%dT%H%M%S")
    results_uri = ctx.store.uri(f"evals/{config.name}/results/{stamp}-{candidate.job_id}.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "results.parquet"
        result.write_parquet(local, run_id=ctx.run_id, candidate_id=candidate.job_id)
        ctx.store.put_file(results_uri, local)
        chart = Path(tmp) / "comparison.png"
        plot_comparisons(result.comparisons, chart)
        if ctx.run_id:
            ctx.mlflow.log_artifact(ctx.run_id, str(chart), "evaluate")

    report = EvaluationReport(
        candidate_uri=candidate.model_uri,
        champion_version=champion_version,
        comparisons=result.comparisons,
        results_uri=results_uri,
    )
    link = run_url(ctx.settings, ctx.mlflow, ctx.run_id) if ctx.run_id else None
    markdown = render_report(result, mlflow_url=link)
    summary = {
        f"{c.suite}/{c.metric}": {**c.values, "delta": c.delta} for c in result.comparisons
    }
    if ctx.run_id:
        now = int(time.time() * 1000)
        metrics = [
            Metric(f"eval.{c.suite}.{c.metric}.{label}", float(value), now, 0)
            for c in result.comparisons
            for label, value in c.values.items()
        ] + [Metric(f"eval.{c.suite}.{c.metric}.delta", float(c.delta), now, 0) for c in result.comparisons]
        for start in range(0, len(metrics), 900):
            ctx.mlflow.log_batch(ctx.run_id, metrics=metrics[start : start + 900])
        ctx.mlflow.log_table(ctx.run_id, result.examples_frame(), "evaluate/per_example.json")
        ctx.mlflow.log_text(ctx.run_id, markdown, "evaluate/report.md")
        ctx.mlflow.log_text(ctx.run_id, json.dumps(report.model_dump(mode="json"), indent=2), "evaluate/report.json")
        ctx.mlflow.set_tag(ctx.run_id, "tuneline.eval_results_uri", results_uri)
    return EvaluateOutcome(report=report, report_markdown=markdown, summary=summary)
