"""The tune task: runs any backend, with live progress in Prefect and MLflow.

While the job trains, a Prefect progress artifact shows step/total, loss, tokens/s, elapsed and
ETA (from the backend's progress hook and its training metrics, see
:mod:`tuneline.stages.progress`), and MLflow records the machine's system metrics on the run.
At the end, the checkpoints the job left are listed with their step and validation loss, as a
Prefect table and as ``checkpoints/checkpoints.json`` on the MLflow run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.logging import get_logger

from tasks._retry import RETRY_DELAYS, transient_only
from tasks.tracking import artifact_key, object_link, run_artifacts_url
from tuneline.backends.base import JobStatus
from tuneline.backends.registry import provider_for
from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion, TrainedModel
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.progress import CheckpointRow, ProgressTracker, checkpoint_rows, format_duration
from tuneline.stages.tune import cancel_tune, job_spec, resolve_base_model, run_tune
from tuneline.storage.tracking import listen_to_metrics, run_url

__all__ = ["publish_training_views", "resolve_base", "stop_tuning_job", "tune_model"]

PROGRESS_EVERY_S = 1.0
"""At most one progress update a second: each is an HTTP call to Prefect on the training thread."""

SYSTEM_METRICS_EVERY_S = 5.0


def _expected_steps(config: RunConfig) -> int | None:
    return provider_for(config).expected_steps(config.tune)


@contextlib.contextmanager
def _system_metrics(ctx: StageContext) -> Iterator[None]:
    """MLflow's system metrics (CPU, memory, GPU when there is one) on the run while it trains."""
    if not ctx.run_id:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    ctx.mlflow  # noqa: B018 - configures MLflow's credentials before the monitor's client starts
    monitor = SystemMetricsMonitor(
        ctx.run_id,
        sampling_interval=SYSTEM_METRICS_EVERY_S,
        samples_before_logging=1,
        tracking_uri=ctx.settings.mlflow_tracking_uri,
    )
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def _checkpoints(ctx: StageContext, config: RunConfig, dataset: DatasetVersion, tracker: ProgressTracker) -> list[CheckpointRow]:
    prefix = job_spec(ctx, config, dataset).output_uri.rstrip("/") + "/checkpoints/"
    validation = dict(tracker.validation_by_step)
    if ctx.run_id:
        # The run's history also holds the steps an earlier (retried) attempt measured.
        validation.update({m.step: m.value for m in ctx.mlflow.get_metric_history(ctx.run_id, "validation_loss")})
    return checkpoint_rows(ctx.store.list_keys(prefix), prefix, validation)


def publish_training_views(
    ctx: StageContext, config: RunConfig, dataset: DatasetVersion, model: TrainedModel, tracker: ProgressTracker
) -> list[CheckpointRow]:
    """The checkpoints table (Prefect and ``checkpoints/checkpoints.json`` in MLflow) and the summary."""
    final = tracker.snapshot()

    rows = _checkpoints(ctx, config, dataset, tracker)
    if rows:
        create_table_artifact(
            [
                {"step": r.step, "validation loss": None if r.validation_loss is None else round(r.validation_loss, 4),
                 "checkpoint": r.uri, "manifest (link)": object_link(ctx.store, r.uri + "manifest.json")}
                for r in rows
            ],
            key=artifact_key(config.name, "checkpoints"),
            description=f"Checkpoints of job `{model.job_id}`, oldest first",
        )
        if ctx.run_id:
            ctx.mlflow.log_dict(
                ctx.run_id, {"job_id": model.job_id, "checkpoints": [r.model_dump() for r in rows]},
                "checkpoints/checkpoints.json",
            )
    mlflow_link = run_url(ctx.settings, ctx.run_id) if ctx.run_id else None

    def num(value: float | None, digits: int = 4) -> str:
        return "n/a" if value is None else f"{value:,.{digits}f}"

    create_markdown_artifact(
        "\n".join([
            f"## Tuned `{config.name}` ({model.backend})",
            f"- job: `{model.job_id}`",
            f"- base model: `{model.base_model}`",
            f"- steps: {model.steps}; final train loss {num(model.final_train_loss)}; "
            f"validation loss {num(model.final_validation_loss)}; tokens/s {num(model.tokens_per_second, 0)}",
            f"- took {format_duration(final.elapsed_s)}; {len(rows)} checkpoint(s) kept",
            *([f"- [MLflow run]({mlflow_link}) · [model and checkpoints]({run_artifacts_url(mlflow_link)})"]
              if mlflow_link else []),
            f"- weights: `{model.model_uri}`",
        ]),
        key=artifact_key(config.name, "training-summary"),
    )
    return rows


@task(name="resolve-base-model", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def resolve_base(config: RunConfig, mlflow_run_id: str | None = None) -> RunConfig:
    """The config with a registered base model (``models:/<name>@champion``) read once as its weights."""
    resolved = resolve_base_model(StageContext(get_settings(), run_id=mlflow_run_id), config)
    if resolved is not config:
        get_run_logger().info("base model %s: %s", config.tune.base_model, resolved.tune.base_model)
    return resolved


# Retrying is safe: the job identity makes a re-submit re-attach (Bedrock) or resume from the
# last checkpoint (local) instead of starting a duplicate job.
# log_prints off here, unlike the flows: `datasets` fingerprints a training set with dill, which
# disassembles functions into a redirected sys.stdout, and Prefect's print patch sent every
# bytecode line of that into the task's log. Tuneline's own messages go through loggers.
@task(name="tune-model", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only, log_prints=False)
def tune_model(config: RunConfig, dataset: DatasetVersion, mlflow_run_id: str | None = None) -> TrainedModel:
    logger = get_run_logger()
    ctx = StageContext(get_settings(), run_id=mlflow_run_id)
    total = _expected_steps(config)
    tracker = ProgressTracker(total)
    progress_id = create_progress_artifact(
        0.0, key=artifact_key(config.name, "training-progress"), description=tracker.snapshot().describe()
    )
    last_logged = -1
    last_update = 0.0

    def on_progress(status: JobStatus) -> None:
        nonlocal last_logged, last_update
        progress = tracker.on_status(status)
        now = time.monotonic()
        if now - last_update >= PROGRESS_EVERY_S or status.state.finished:
            last_update = now
            update_progress_artifact(progress_id, progress.percent or 0.0, description=progress.describe())
        if status.steps // 25 != last_logged // 25 or status.state.finished:
            last_logged = status.steps
            logger.info("job %s: %s", status.job_id, progress.describe())

    listening = listen_to_metrics(mlflow_run_id, tracker.on_metrics) if mlflow_run_id else contextlib.nullcontext()
    with listening, _system_metrics(ctx), _backend_log_lines(logger):
        model = run_tune(ctx, config, dataset, on_progress)
    final = tracker.snapshot()
    update_progress_artifact(progress_id, 100.0, description=final.describe())
    try:
        publish_training_views(ctx, config, dataset, model, tracker)
    except Exception:  # noqa: BLE001 - the model is trained; a missing view must not fail or retrain it
        logger.warning("could not publish the training views of %s", config.name, exc_info=True)
    return model


class _IntoRunLogger(logging.Handler):
    """Passes a core-library log record on to the task run's logger (console and Prefect UI)."""

    def __init__(self, run_logger: Any) -> None:
        super().__init__(logging.INFO)
        self.run_logger = run_logger

    def emit(self, record: logging.LogRecord) -> None:
        # The run logger is the line's only way out (no propagation meanwhile): its traceback too.
        self.run_logger.log(record.levelno, record.getMessage(), exc_info=record.exc_info)


@contextlib.contextmanager
def _backend_log_lines(run_logger: Any) -> Iterator[None]:
    """The backend's own lines (re-attaching to a job, resuming from checkpoint step-N, a
    checkpoint saved) in the task's log: without this they stop at the root logger's WARNING.
    They go there only: passed on to the root's console handler as well, each line would be
    printed twice in the terminal."""
    source = logging.getLogger("tuneline.backends")
    handler, level, propagate = _IntoRunLogger(run_logger), source.level, source.propagate
    source.addHandler(handler)
    source.setLevel(logging.INFO)
    source.propagate = False
    try:
        yield
    finally:
        source.removeHandler(handler)
        source.setLevel(level)
        source.propagate = propagate


def stop_tuning_job(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_cancellation`` hook of the tune subflow: stop the backend job it was waiting on."""
    config = RunConfig.model_validate(flow_run.parameters["config"])
    dataset = DatasetVersion.model_validate(flow_run.parameters["dataset"])
    job_id = cancel_tune(StageContext(get_settings()), config, dataset)
    get_logger("tuneline.tune").warning("flow run %s cancelled: stopped tuning job %s", flow_run.id, job_id)
