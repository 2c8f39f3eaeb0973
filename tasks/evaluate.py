"""The evaluate task: the comparison table a reviewer decides from and the chart of the deltas, as
Prefect artifacts."""

from __future__ import annotations

import time

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact

from tasks._retry import RETRY_DELAYS, transient_only
from tasks.tracking import LINK_EXPIRES_S, artifact_key, browsable, object_link
from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion, TrainedModel
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.evaluate import EvaluateOutcome, run_evaluate
from tuneline.storage.s3 import ObjectStore

__all__ = ["evaluate_candidate", "publish_evaluation_artifacts"]


@task(name="evaluate-candidate", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def evaluate_candidate(
    config: RunConfig, dataset: DatasetVersion, model: TrainedModel, mlflow_run_id: str | None = None
) -> EvaluateOutcome:
    ctx = StageContext(get_settings(), run_id=mlflow_run_id)
    outcome = run_evaluate(ctx, config, dataset, model)
    logger = get_run_logger()
    for c in outcome.report.comparisons:
        logger.info("%s/%s: %s (delta %+.4f vs %s)", c.suite, c.metric,
                    ", ".join(f"{k}={v:.4f}" for k, v in c.values.items()), c.delta, c.baseline)
    for suite, pii in outcome.suite_pii.items():
        if pii.redacted or pii.rejected:
            logger.warning("suite %s: %d example(s) redacted, %d left out by the PII policy (lines %s)", suite,
                           pii.redacted, pii.rejected, ", ".join(map(str, pii.rejected_lines)) or "none")
    publish_evaluation_artifacts(ctx.store, config, outcome)
    return outcome


def publish_evaluation_artifacts(store: ObjectStore, config: RunConfig, outcome: EvaluateOutcome) -> None:
    """The report as a markdown artifact and the chart as an image artifact, keyed per model.

    A browser opens neither the per-example results nor the chart at an ``s3://`` URI: both are
    presigned links, valid for ``LINK_EXPIRES_S`` (7 days, SigV4's longest)."""
    markdown = browsable(store, outcome.report_markdown, outcome.report.results_uri)
    create_markdown_artifact(markdown, key=artifact_key(config.name, "evaluation-report"))
    if outcome.chart_uri is None:
        return
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + LINK_EXPIRES_S))
    baseline = next((c.baseline for c in outcome.report.comparisons), "baseline")
    create_image_artifact(
        image_url=object_link(store, outcome.chart_uri),
        key=artifact_key(config.name, "evaluation-chart"),
        description=(
            f"Candidate − {baseline} per suite and metric, with 95% intervals (green: better, red: worse). "
            f"The image is a presigned link valid for {LINK_EXPIRES_S // 86400} days, until {until}; after that the chart is at "
            f"{outcome.chart_uri} and in the MLflow run's artifacts as evaluate/comparison.png."
        ),
    )
