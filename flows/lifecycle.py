"""The lifecycle: prepare -> tune -> evaluate -> approve -> promote, each stage its own subflow."""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.stages import approve, evaluate, prepare, promote, tune
from tasks.locks import lifecycle_lock
from tasks.tracking import start_tracking
from tuneline.config import ApprovalMode, RunConfig
from tuneline.lineage import LifecycleSummary
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext, end_run
from tuneline.storage.tracking import model_version_url, run_url

__all__ = ["customize_model"]


@flow(name="customize-model", log_prints=True)
def customize_model(config: RunConfig, approval: ApprovalMode | None = None) -> LifecycleSummary:
    """Customize a model for your domain: prepare the data, tune, evaluate, decide, promote.

    Args:
        config: the run config (data, backend and hyperparameters, evaluation suites, approval policy).
        approval: overrides the policy's mode for this run (auto, human, human-on-doubt).
    """
    settings = get_settings()
    # One run per model at a time: a schedule, an event and a person cannot race to promote.
    with lifecycle_lock(config.name, settings.lifecycle_lock_timeout_s):
        return _run_stages(config, approval)


def _run_stages(config: RunConfig, approval: ApprovalMode | None) -> LifecycleSummary:
    logger = get_run_logger()
    settings = get_settings()
    this_run = flow_run.get_id()
    mlflow_run_id = start_tracking(config, this_run, flow_run.get_name())
    ctx = StageContext(settings, run_id=mlflow_run_id)
    try:
        dataset = prepare(config, mlflow_run_id)
        model = tune(config, dataset, mlflow_run_id)
        outcome = evaluate(config, dataset, model, mlflow_run_id)
        decision = approve(config, outcome, mlflow_run_id, approval)
        version = promote(config, dataset, model, outcome.report, decision, outcome.summary, mlflow_run_id)
    except BaseException:
        end_run(ctx, "FAILED")
        raise
    end_run(ctx, "FINISHED")
    summary = LifecycleSummary(
        model_name=config.name,
        flow_run_id=this_run,
        flow_run_url=f"{settings.prefect_ui_url}/runs/flow-run/{this_run}" if this_run else None,
        mlflow_run_id=mlflow_run_id,
        mlflow_run_url=run_url(settings, mlflow_run_id),
        dataset=dataset,
        model=model,
        decision=decision,
        version=version,
        model_version_url=model_version_url(settings, version.name, version.version),
        metrics={key: {k: v for k, v in values.items() if k != "delta"} for key, values in outcome.summary.items()},
    )
    logger.info("%s v%s: %s", config.name, version.version, "champion" if version.promoted else "not promoted")
    return summary
