"""The "anything changed since the champion?" check of scheduled and event-triggered runs."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact

from tasks.tracking import artifact_key
from tuneline.config import RunConfig
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.stages.retraining import RetrainingDecision, check_retraining, retraining_markdown

__all__ = ["check_for_changes"]


@task(name="check-for-changes", persist_result=False)
def check_for_changes(config: RunConfig) -> RetrainingDecision:
    """Prepare the data and compare its version, the base model and the config with the champion's."""
    check = check_retraining(StageContext(get_settings()), config)
    decision = check.decision
    get_run_logger().info(
        "%s: %s (%s)", config.name, "retraining" if decision.retrain else "nothing to do", "; ".join(decision.reasons)
    )
    create_markdown_artifact(
        retraining_markdown(decision) + "\n" + check.report_markdown,
        key=artifact_key(config.name, "retraining-check"),
        description=f"Does {config.name} need retraining?",
    )
    return decision
