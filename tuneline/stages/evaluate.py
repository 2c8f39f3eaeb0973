"""Stage 3, evaluate: candidate vs base vs the current champion, on every configured suite."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow.entities import Metric

from tuneline.backends.base import TextGenerator
from tuneline.backends.registry import provider, provider_for
from tuneline.config import RunConfig, SuiteKind
from tuneline.data.versions import read_split
from tuneline.errors import EvaluationError
from tuneline.evaluation.cache import ResultCache
from tuneline.evaluation.mlflow_views import log_evaluation_views, per_example_table
from tuneline.evaluation.report import plot_comparisons, render_report
from tuneline.evaluation.runner import EvaluationResult, Judge, ModelUnderTest, evaluate_models
from tuneline.evaluation.suites import LoadedSuite, SuitePii
from tuneline.governance.registry import ModelRegistry
from tuneline.lineage import DatasetVersion, EvaluationReport, TrainedModel
from tuneline.records import reference_chat
from tuneline.stages.context import StageContext
from tuneline.storage.s3 import ObjectStore, local_path_or_none
from tuneline.storage.tracking import run_url, unreachable_as_service_error
from tuneline.tags import BACKEND_TAG, BASE_MODEL_TAG, EVAL_RESULTS_URI_TAG, JOB_ID_TAG, MODEL_URI_TAG

# The tag names are re-exported for the modules that imported them from here (tuneline.tags owns them).
__all__ = [
    "BACKEND_TAG",
    "BASE_MODEL_TAG",
    "MODEL_URI_TAG",
    "EvaluateOutcome",
    "load_suites",
    "run_evaluate",
    "upload_chart",
]

# The LLM judge runs on Bedrock Runtime whichever backend tuned the model.
JUDGE_BACKEND = "bedrock"


@dataclass(frozen=True)
class EvaluateOutcome:
    report: EvaluationReport
    report_markdown: str
    summary: dict[str, dict[str, float]]
    chart_uri: str | None = None
    """``s3://`` URI of the comparison chart (PNG), next to the per-example results."""
    suite_pii: dict[str, SuitePii] = field(default_factory=dict)
    """Suite -> what the PII policy did to its records (the report says it too)."""
    by_suite: dict[str, Any] = field(default_factory=dict)
    """Suite -> metric -> values, delta, interval, n, direction, called (``EvaluationResult.summary``)."""


def load_suites(ctx: StageContext, config: RunConfig, dataset: DatasetVersion) -> list[LoadedSuite]:
    """Every configured suite: a ``source`` file screened with the run's PII policy (``data.pii``),
    the test split of ``dataset`` as prepare wrote it (prepare already applied that policy)."""
    suites = []
    for suite in config.evaluation.suites:
        if suite.source is None:
            if suite.kind is not SuiteKind.TASK:
                raise EvaluationError(f"suite {suite.name!r} ({suite.kind}) needs a 'source' JSONL file")
            held_out = read_split(ctx.store, dataset.uri, "test")
            # Every kind is evaluated as prompt + reference answer (preference: the chosen one).
            records = [chat for record in held_out if (chat := reference_chat(record)) is not None]
            if held_out and not records:
                kinds = sorted({r.kind.value for r in held_out})
                raise EvaluationError(
                    f"suite {suite.name!r}: the test split of {dataset.name} holds only {', '.join(kinds)} records, "
                    "which have no reference answer to evaluate against: give the suite a 'source' JSONL file"
                )
            suites.append(LoadedSuite(config=suite, records=tuple(records), pii=SuitePii(screened=False)))
        else:
            lines = _read_lines(ctx, suite.source)
            suites.append(LoadedSuite.from_jsonl(suite, lines, suite.source, pii=config.data.pii))
    return suites


def _read_lines(ctx: StageContext, source: str) -> list[str]:
    path = local_path_or_none(source)
    if path is None:
        return ctx.store.get_bytes(source).decode("utf-8").splitlines()
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise EvaluationError(f"evaluation suite file not found: {source}") from exc


def _generator_factory(
    ctx: StageContext, config: RunConfig, label: str, model_uri: str | None, base_model: str
) -> Callable[[], TextGenerator]:
    backend = provider_for(config)
    return lambda: backend.generator(
        config, label=label, model_uri=model_uri, base_model=base_model, settings=ctx.settings, store=ctx.store
    )


@unreachable_as_service_error()
def _judge(ctx: StageContext, config: RunConfig) -> Judge | None:
    """The LLM judge (Bedrock Runtime, whatever the tuning backend), when the config turns it on;
    its verdicts are cached."""
    if config.evaluation.judge is None:
        return None
    return provider(JUDGE_BACKEND).judge(config.evaluation.judge, ctx.settings)


def run_evaluate(
    ctx: StageContext, config: RunConfig, dataset: DatasetVersion, candidate: TrainedModel
) -> EvaluateOutcome:
    registry = ModelRegistry(ctx.mlflow)
    champion = registry.champion(config.name) if config.evaluation.compare_with_champion else None
    models = {
        "candidate": ModelUnderTest(
            model_id=f"{config.name}/job/{candidate.job_id}",
            factory=_generator_factory(ctx, config, "candidate", candidate.model_uri, candidate.base_model),
        ),
        "base": ModelUnderTest(
            model_id=f"base/{candidate.base_model}",
            factory=_generator_factory(ctx, config, "base", None, candidate.base_model),
        ),
    }
    champion_version = None
    if champion is not None:
        champion_version = str(champion.version)
        tags = champion.tags or {}
        if MODEL_URI_TAG not in tags:
            raise EvaluationError(
                f"champion v{champion_version} of {config.name!r} has no {MODEL_URI_TAG} tag; "
                "it was not registered by Tuneline and cannot be evaluated"
            )
        models["champion"] = ModelUnderTest(
            # the job id, not the version number: the same weights re-registered hit the same cache
            model_id=f"{config.name}/job/{tags.get(JOB_ID_TAG, champion_version)}",
            factory=_generator_factory(
                ctx, config, "champion", tags[MODEL_URI_TAG], tags.get(BASE_MODEL_TAG, candidate.base_model)
            ),
        )

    suites = load_suites(ctx, config, dataset)
    cache = ResultCache(ctx.store.uri(f"eval-cache/{config.name}/"), store=ctx.store)
    result = evaluate_models(models, suites, config.evaluation, cache=cache, run_id=ctx.run_id, judge=_judge(ctx, config))

    stamp = time.strftime("%Y%m%dT%H%M%S")
    results_uri = result.write_parquet(
        ctx.store.uri(f"evals/{config.name}/{stamp}-{ctx.run_id or candidate.job_id}/results.parquet"),
        store=ctx.store,
    )
    report = EvaluationReport(
        candidate_uri=candidate.model_uri,
        champion_version=champion_version,
        comparisons=list(result.comparisons),
        results_uri=results_uri,
    )
    links = {"MLflow run": run_url(ctx.settings, ctx.run_id)} if ctx.run_id else {}
    links["Per-example results"] = results_uri
    markdown = render_report(result, title=f"Evaluation of {config.name}", links=links, suites=suites)
    summary = {f"{c.suite}/{c.metric}": {**c.values, "delta": c.delta} for c in result.comparisons}
    with tempfile.TemporaryDirectory() as tmp:
        chart = plot_comparisons(list(result.comparisons), Path(tmp) / "comparison.png")
        chart_uri = upload_chart(ctx.store, chart, results_uri)
        if ctx.run_id:
            _log_to_mlflow(ctx, result, markdown, report, chart, traces_per_suite=config.evaluation.traces_per_suite)
    return EvaluateOutcome(
        report=report,
        report_markdown=markdown,
        summary=summary,
        chart_uri=chart_uri,
        suite_pii={s.name: s.pii for s in suites if s.pii is not None},
        by_suite=result.summary(),
    )


def upload_chart(store: ObjectStore, chart: Path, results_uri: str) -> str:
    """Put the chart PNG next to the per-example results (``<run folder>/comparison.png``), where
    a presigned link can show it in a browser; returns its URI."""
    uri = results_uri.rsplit("/", 1)[0] + "/" + chart.name
    return store.put_bytes(uri, chart.read_bytes(), content_type="image/png")


def _log_to_mlflow(
    ctx: StageContext,
    result: EvaluationResult,
    markdown: str,
    report: EvaluationReport,
    chart: Path,
    *,
    traces_per_suite: int | None,
) -> None:
    run_id = ctx.run_id
    assert run_id is not None
    now = int(time.time() * 1000)
    metrics = [Metric(f"eval/{key}", float(value), now, 0) for key, value in result.mlflow_metrics().items()]
    for start in range(0, len(metrics), 900):  # log_batch takes at most 1000 metrics
        ctx.mlflow.log_batch(run_id, metrics=metrics[start : start + 900])
    ctx.mlflow.log_table(run_id, per_example_table(result.rows.to_pandas()), "evaluate/per_example.json")
    ctx.mlflow.log_text(run_id, markdown, "evaluate/report.md")
    ctx.mlflow.log_dict(run_id, report.model_dump(mode="json"), "evaluate/report.json")
    ctx.mlflow.set_tag(run_id, EVAL_RESULTS_URI_TAG, report.results_uri)
    ctx.mlflow.log_artifact(run_id, str(chart), "evaluate")
    # MLflow's own views: an evaluation run of scored traces per model, charts with CIs, answers side by side
    log_evaluation_views(ctx.mlflow, run_id, result, traces_per_suite=traces_per_suite)
