"""The MLflow run that every stage of one lifecycle run logs into."""

from __future__ import annotations

from prefect import task

from tasks._retry import RETRY_DELAYS, transient_only
from tuneline.config import RunConfig
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext, start_lifecycle_run

__all__ = ["start_tracking"]


@task(name="start-tracking", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def start_tracking(config: RunConfig, flow_run_id: str | None, flow_run_name: str | None) -> str:
    ctx = StageContext(get_settings())
    return start_lifecycle_run(ctx, config, run_name=flow_run_name, tags={"tuneline.flow_run_id": flow_run_id or ""})
