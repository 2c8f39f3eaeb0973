"""The prepare tasks: a cached build of the dataset version, and its record in MLflow and the UI.

The build is cached by a key made from the source's content, the prepare config, the target and
the tokenizer (``prepare_cache_key``): the same input gives a cache hit and no recompute. The
record step is never cached, so every lifecycle run logs its dataset into its own MLflow run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks._retry import RETRY_DELAYS, transient_only
from tasks.tracking import artifact_key
from tuneline.config import RunConfig
from tuneline.data.prepare import PreparedDataset
from tuneline.errors import DataError
from tuneline.lineage import DatasetVersion
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.prepare import (
    build_dataset_version,
    prepare_cache_key,
    record_dataset_version,
)

__all__ = ["build_dataset", "prepare_dataset"]


def _cache_key(_context: Any, parameters: dict[str, Any]) -> str:
    return "prepare-" + prepare_cache_key(StageContext(get_settings()), parameters["config"])


# JSON, not pickle: a cached result is read back from disk, and must never execute code.
@task(name="build-dataset-version", cache_key_fn=_cache_key, cache_expiration=timedelta(days=30),
      persist_result=True, result_serializer="json", retries=len(RETRY_DELAYS),
      retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def build_dataset(config: RunConfig) -> PreparedDataset:
    return build_dataset_version(StageContext(get_settings()), config)


@task(name="record-dataset-version", persist_result=False, retries=len(RETRY_DELAYS),
      retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def prepare_dataset(config: RunConfig, mlflow_run_id: str | None = None) -> DatasetVersion:
    logger = get_run_logger()
    ctx = StageContext(get_settings(), run_id=mlflow_run_id)
    outcome = build_dataset(config)
    try:
        record_dataset_version(ctx, outcome)
    except DataError:
        # The cached version was deleted from S3 since: rebuild it rather than fail.
        logger.warning("cached dataset version %s is gone from S3; preparing it again", outcome.dataset.uri)
        outcome = build_dataset.with_options(refresh_cache=True)(config)
        record_dataset_version(ctx, outcome)
    dataset = outcome.dataset
    logger.info(
        "dataset %s version %s: %d read, %d accepted, %d rejected, %d duplicates -> %s",
        dataset.name, dataset.version, dataset.total, dataset.accepted, dataset.rejected,
        dataset.duplicates, dataset.uri,
    )
    create_markdown_artifact(outcome.report_markdown, key=artifact_key(config.name, "data-report"), description=f"Data report for {dataset.name}")
    return dataset
