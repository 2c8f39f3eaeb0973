"""The lifecycle: prepare -> tune -> evaluate -> approve -> promote, each stage its own subflow."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.stages import approve, evaluate, prepare, promote, tune
from tasks.locks import lifecycle_lock
from tasks.tracking import artifact_key, start_tracking
from tasks.tune import resolve_base
from tuneline.config import ApprovalMode, RunConfig
from tuneline.lineage import LifecycleSummary
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext, end_run
from tuneline.storage.tracking import model_version_url, run_url

__all__ = ["customize_model"]


def _run_name() -> str:
    """``support-tickets-20261202-171530``: the model a run is for, readable in every run list."""
    config = flow_run.parameters.get("config") or {}
    name = config.name if isinstance(config, RunConfig) else dict(config).get("name", "model")
    return f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def rollup_markdown(summary: LifecycleSummary) -> str:
    """The parent run's one page: data, training, evaluation, decision, promotion, with links."""
    d, m, decision, v = summary.dataset, summary.model, summary.decision, summary.version
    outcome = (
        "nothing new to decide" if decision.unchanged
        else "promoted to champion" if v.promoted
        else "rejected, aliases unchanged" if not decision.approved
        else "approved, not promoted"
    )
    lines = [
        f"# {summary.model_name}: {outcome}",
        "",
        f"[MLflow run]({summary.mlflow_run_url}) · [registered model v{v.version}]({summary.model_version_url})",
        "",
        "| stage | result |",
        "| --- | --- |",
        f"| data | version `{d.version}`: {d.accepted} accepted, {d.rejected} rejected, {d.duplicates} duplicates "
        f"of {d.total} |",
        f"| training | {m.backend}, {m.steps} steps, train loss {_fmt(m.final_train_loss)}, validation loss "
        f"{_fmt(m.final_validation_loss)}, {_fmt(m.tokens_per_second, 0)} tokens/s |",
        f"| decision | {'approved' if decision.approved else 'rejected'} by {decision.decided_by}: "
        f"{'; '.join(decision.reasons) or '-'} |",
        f"| promotion | v{v.version}, aliases {', '.join(v.aliases) or 'none'} ("
        + (f"previous champion: {v.previous_champion or 'none'}" if v.promoted else "not promoted: the champion is unchanged")
        + ") |",
        "",
        "## Evaluation",
        "",
        "| suite/metric | " + " | ".join(_labels(summary)) + " |",
        "| --- |" + " --- |" * len(_labels(summary)),
    ]
    for key, values in summary.metrics.items():
        lines.append(f"| {key} | " + " | ".join(_fmt(values.get(label)) for label in _labels(summary)) + " |")
    return "\n".join(lines) + "\n"


def _labels(summary: LifecycleSummary) -> list[str]:
    seen = {label for values in summary.metrics.values() for label in values}
    return [label for label in ("base", "champion", "candidate") if label in seen]


@flow(name="customize-model", log_prints=True, flow_run_name=_run_name)
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
        config = resolve_base(config, mlflow_run_id)
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
    try:
        create_markdown_artifact(
            rollup_markdown(summary), key=artifact_key(config.name, "lifecycle"),
            description=f"Lifecycle of {config.name}: data, training, evaluation, decision, promotion",
        )
    except Exception:  # noqa: BLE001 - the model is promoted; a missing page must not fail the run
        logger.warning("could not publish the roll-up of %s", config.name, exc_info=True)
    logger.info("%s v%s: %s", config.name, version.version, "champion" if version.promoted else "not promoted")
    return summary
