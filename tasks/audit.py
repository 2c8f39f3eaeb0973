"""The scheduled audit check as a task: retried through outages, never for what it finds."""

from __future__ import annotations

from prefect import get_run_logger, task

from tasks._retry import RETRY_DELAYS, transient_only
from tuneline.governance.integrity import IntegrityReport, check_integrity
from tuneline.settings import get_settings
from tuneline.stages.context import StageContext
from tuneline.storage.tracking import unreachable_as_service_error

__all__ = ["verify_audit_log"]


@task(name="verify-audit-log", persist_result=False, retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=0.5, retry_condition_fn=transient_only)
def verify_audit_log(model_name: str | None = None) -> IntegrityReport:
    """What `tuneline audit --verify` checks, for one chain or every one."""
    ctx = StageContext(get_settings())
    with unreachable_as_service_error():
        report = check_integrity(ctx.store, ctx.mlflow, model_name)
    logger = get_run_logger()
    for problem in report.problems:
        logger.error("%s", problem)
    logger.info("checked %d chain(s): %s; %d problem(s)", len(report.checked), ", ".join(report.checked), len(report.problems))
    return report
