"""The evaluate task: the comparison table a reviewer decides from, as a Prefect artifact."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks._retry import RETRY_DELAYS, transient_only
from tasks.tracking import artifact_key, browsable
from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion, TrainedModel
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.evaluate import EvaluateOutcome, run_evaluate

__all__ = ["evaluate_candidate"]


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
    # a browser opens the per-example results through a presigned link; an s3:// URI it cannot open
    markdown = browsable(ctx.store, outcome.report_markdown, outcome.report.results_uri)
    create_markdown_artifact(markdown, key=artifact_key(config.name, "evaluation-report"))
    return outcome
