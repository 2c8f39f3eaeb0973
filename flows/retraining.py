"""Retraining from a reviewed run config: the flow behind scheduled and event-triggered deployments.

The config is read at run time from the file the deployment names (under ``deployments/``, from
the code the worker runs): a reviewed change to that file takes effect at the next run without a
redeploy, and the deployment's parameters stay two short strings an event can template.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger
from prefect.client.schemas.objects import State
from prefect.states import Completed

from flows.lifecycle import customize_model
from tasks.retraining import check_for_changes
from tuneline.config import ApprovalMode, RunConfig, load_run_config
from tuneline.lineage import LifecycleSummary

__all__ = ["load_retraining_config", "retrain"]


def load_retraining_config(config_path: str, data_source: str | None = None) -> RunConfig:
    """The run config at ``config_path``, reading its data from ``data_source`` when one is given."""
    config = load_run_config(Path(config_path))
    if data_source:
        config = config.model_copy(update={"data": config.data.model_copy(update={"source": data_source})})
        # re-validate: the data source is the one field an event fills in
        config = RunConfig.model_validate(config.model_dump())
    return config


@flow(name="retrain", persist_result=False, log_prints=True)
def retrain(
    config_path: str,
    data_source: str | None = None,
    only_if_changed: bool = True,
    approval: ApprovalMode | None = None,
) -> LifecycleSummary | State:
    """Run the lifecycle for a reviewed config, unless nothing changed since the champion.

    Args:
        config_path: run config YAML, relative to the project directory (e.g. deployments/support-tickets.yaml).
        data_source: train on this file or prefix instead of the config's data.source (an event fills it in).
        only_if_changed: end early, as "nothing to do", when the prepared dataset version, the base model
            and the config are those the champion was built from.
        approval: overrides the config's approval mode for this run.
    """
    config = load_retraining_config(config_path, data_source)
    if only_if_changed:
        decision = check_for_changes(config)
        if not decision.retrain:
            message = f"nothing to do for {config.name}: {'; '.join(decision.reasons)}"
            get_run_logger().info(message)
            return Completed(message=message, name="Nothing to do")
    return customize_model(config, approval)
