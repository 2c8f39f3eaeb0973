"""Promotion tasks: register and move aliases under a per-model lock; roll back."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.concurrency.sync import concurrency

from tasks._retry import RETRY_DELAYS, transient_only
from tasks.locks import LEASE_S, ensure_concurrency_limit, lease_holder
from tasks.tracking import artifact_key
from tuneline.config import RunConfig
from tuneline.lineage import DatasetVersion, Decision, EvaluationReport, ModelVersionRef, TrainedModel
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.promote import run_promote, run_rollback
from tuneline.storage.tracking import model_version_url, unreachable_as_service_error

__all__ = ["promote_model", "promotion_lock_name", "rollback_model"]


def promotion_lock_name(model_name: str) -> str:
    return f"tuneline-promote-{model_name}"


# Retried like the other stages: run_promote is safe to run again for the same job (the version is
# found by its job id, the alias move is compare-then-set), so an S3 or MLflow outage mid-promotion
# does not fail a run whose training and evaluation are done.
@task(name="promote-model", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def promote_model(
    config: RunConfig,
    dataset: DatasetVersion,
    model: TrainedModel,
    report: EvaluationReport,
    decision: Decision,
    evaluation_summary: dict[str, dict[str, float]],
    mlflow_run_id: str | None = None,
    flow_run_id: str | None = None,
) -> ModelVersionRef:
    settings = get_settings()
    ctx = StageContext(settings, run_id=mlflow_run_id)
    lock = promotion_lock_name(config.name)
    ensure_concurrency_limit(lock)
    with (
        concurrency(lock, occupy=1, lease_duration=LEASE_S, strict=True, holder=lease_holder()),
        unreachable_as_service_error(),
    ):
        ref = run_promote(ctx, config, dataset, model, report, decision, evaluation_summary, flow_run_id)
    url = model_version_url(settings, ref.name, ref.version)
    verb = "promoted to champion" if ref.promoted else "registered, not promoted"
    get_run_logger().info("%s v%s %s (previous champion: %s) %s", ref.name, ref.version, verb, ref.previous_champion, url)
    create_markdown_artifact(
        f"## {ref.name} v{ref.version}: {verb}\n\n- aliases: {', '.join(ref.aliases) or 'none'}\n"
        f"- previous champion: {ref.previous_champion or 'none'}\n- [open in MLflow]({url})\n",
        key=artifact_key(config.name, "promotion"),
    )
    return ref


@task(name="rollback-model", persist_result=False)
def rollback_model(model_name: str, to_version: str | None, actor: str, reason: str) -> ModelVersionRef:
    ctx = StageContext(get_settings())
    lock = promotion_lock_name(model_name)
    ensure_concurrency_limit(lock)
    with (
        concurrency(lock, occupy=1, lease_duration=LEASE_S, strict=True, holder=lease_holder()),
        unreachable_as_service_error(),
    ):
        ref = run_rollback(ctx, model_name, to_version, actor, reason)
    get_run_logger().info("%s champion rolled back from v%s to v%s", model_name, ref.previous_champion, ref.version)
    return ref
