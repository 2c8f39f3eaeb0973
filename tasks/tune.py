"""The tune task: runs any backend, with a live progress artifact in the Prefect UI."""

from __future__ import annotations

from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.logging import get_logger

from tasks._retry import RETRY_DELAYS, transient_only
from tuneline.backends.base import JobStatus
from tuneline.backends.registry import provider_for
from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion, TrainedModel
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.tune import cancel_tune, run_tune

__all__ = ["stop_tuning_job", "tune_model"]


def _expected_steps(config: RunConfig) -> int | None:
    return provider_for(config).expected_steps(config.tune)


# Retrying is safe: the job identity makes a re-submit re-attach (Bedrock) or resume from the
# last checkpoint (local) instead of starting a duplicate job.
@task(name="tune-model", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def tune_model(config: RunConfig, dataset: DatasetVersion, mlflow_run_id: str | None = None) -> TrainedModel:
    logger = get_run_logger()
    progress_id = create_progress_artifact(0.0, key="training-progress", description="Training progress")
    total = _expected_steps(config)
    last_logged = -1

    def on_progress(status: JobStatus) -> None:
        nonlocal last_logged
        if total:
            update_progress_artifact(progress_id, min(100.0, 100.0 * status.steps / total))
        if status.steps // 25 != last_logged // 25 or status.state.finished:
            last_logged = status.steps
            logger.info("job %s: %s, step %d, %s", status.job_id, status.state, status.steps, status.message)

    model = run_tune(StageContext(get_settings(), run_id=mlflow_run_id), config, dataset, on_progress)
    update_progress_artifact(progress_id, 100.0)
    create_markdown_artifact(
        "\n".join([
            f"## Tuned `{config.name}` ({model.backend})",
            f"- job: `{model.job_id}`",
            f"- base model: `{model.base_model}`",
            f"- weights: `{model.model_uri}`",
            f"- MLflow model: `{model.mlflow_model_uri}`",
            f"- steps: {model.steps}; final train loss {model.final_train_loss}; "
            f"validation loss {model.final_validation_loss}; tokens/s {model.tokens_per_second}",
        ]),
        key="training-summary",
    )
    return model


def stop_tuning_job(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook of the tune subflow: stop the backend job it was waiting on."""
    config = RunConfig.model_validate(flow_run.parameters["config"])
    dataset = DatasetVersion.model_validate(flow_run.parameters["dataset"])
    job_id = cancel_tune(StageContext(get_settings()), config, dataset)
    get_logger("tuneline.tune").warning("flow run %s cancelled: stopped tuning job %s", flow_run.id, job_id)
