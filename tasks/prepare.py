"""The prepare task: runs the prepare stage and shows the data report in the Prefect UI."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks._retry import RETRY_DELAYS, transient_only
from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.prepare import run_prepare

__all__ = ["prepare_dataset"]


@task(name="prepare-dataset", retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def prepare_dataset(config: RunConfig, mlflow_run_id: str | None = None) -> DatasetVersion:
    logger = get_run_logger()
    outcome = run_prepare(StageContext(get_settings(), run_id=mlflow_run_id), config)
    dataset = outcome.dataset
    logger.info(
        "dataset %s version %s: %d read, %d accepted, %d rejected, %d duplicates -> %s",
        dataset.name, dataset.version, dataset.total, dataset.accepted, dataset.rejected,
        dataset.duplicates, dataset.uri,
    )
    create_markdown_artifact(
        outcome.report_markdown, key="data-report", description=f"Data report for {dataset.name}"
    )
    return dataset
