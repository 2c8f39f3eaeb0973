"""The CLI side of approvals, audit and reviewer enrolment (commands are declared in main.py)."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

__all__ = ["AuditReport", "RefusedError", "audit_report", "send_review"]


class RefusedError(Exception):
    """The approve subflow refused the decision (who sent it could not prove who they are)."""


def send_review(
    paused_run_id: str, decision: str, reviewer: str, token: str, comment: str, wait_s: float = 60
) -> str:
    """Resume the paused approve subflow with the decision, then wait for its verdict.

    Returns the verdict line; raises RefusedError with the subflow's reason when it refused, and
    TimeoutError when the subflow gave no verdict within ``wait_s`` (the decision may still count).
    """
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.flow_runs import resume_flow_run
    from prefect.input.actions import read_flow_run_input

    run_id = UUID(paused_run_id)
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    pause_key = state.state_details.pause_key if state is not None else None
    resume_flow_run(
        run_id, run_input={"decision": decision, "reviewer": reviewer, "token": token, "comment": comment}
    )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            verdict = read_flow_run_input(f"{pause_key}-verdict", flow_run_id=run_id)
        except ObjectNotFound:
            verdict = None
        if verdict:
            if not verdict.get("accepted"):
                raise RefusedError(verdict.get("reason") or "refused")
            return f"{decision} by {reviewer} accepted for flow run {paused_run_id}"
        time.sleep(0.5)
    raise TimeoutError(
        f"{decision} sent for flow run {paused_run_id}, but it gave no verdict within {wait_s:.0f} s; "
        f"check `tuneline audit --model ...`"
    )


class AuditReport:
    """What `tuneline audit` shows: readable records (each marked whether the anchored chain vouches
    for it), unreadable objects, and (with --verify) the chain, reviewer and registry problems."""

    def __init__(self, entries: list[Any], unreadable: list[Any], problems: list[Any] | None) -> None:
        self.entries = entries
        self.unreadable = unreadable
        self.problems = problems

    @property
    def off_chain(self) -> int:
        return sum(1 for e in self.entries if not e.trusted)

    def as_json(self) -> dict[str, Any]:
        from tuneline.governance.audit import problems_as_json

        out: dict[str, Any] = {
            "records": [{**e.record.model_dump(mode="json"), "key": e.key, "trusted": e.trusted} for e in self.entries],
            "unreadable": [{"key": e.key, "problem": e.error} for e in self.unreadable],
        }
        if self.problems is not None:
            out["verified"] = not self.problems
            out["problems"] = problems_as_json(self.problems)
        return out


def audit_report(settings: Any, model: str | None, verify: bool) -> AuditReport:
    from tuneline.governance.audit import AuditLog
    from tuneline.governance.integrity import check_integrity, require_known_chain
    from tuneline.governance.reviewers import ReviewerRegistry
    from tuneline.stages.context import StageContext
    from tuneline.storage.tracking import unreachable_as_service_error

    ctx = StageContext(settings)
    log = AuditLog(ctx.store, ctx.mlflow)
    enrolments = ReviewerRegistry(ctx.store, ctx.mlflow).chain
    with unreachable_as_service_error():
        if model is not None:
            require_known_chain(log, ctx.mlflow, model, enrolments)
        names = [model] if model else [*log.model_names(), enrolments]
        entries = log.listing(names)
        unreadable = [e for name in names for e in log.unreadable(name)]
        problems = check_integrity(ctx.store, ctx.mlflow, model).problems if verify else None
    return AuditReport(entries, unreadable, problems)
