"""Rollback: move the champion alias back to an approved version and record who did it and why."""

from __future__ import annotations

from prefect import flow

from tasks.approve import rollback_with_approval
from tuneline.lineage import ModelVersionRef

__all__ = ["rollback"]


@flow(name="rollback")
def rollback(
    model_name: str,
    to_version: str | None = None,
    actor: str = "unknown",
    reason: str = "manual rollback",
    force: bool = False,
) -> ModelVersionRef:
    """Point `champion` back at `to_version` (default: the `previous` alias), which an approval must
    cover; `force` needs `actor` to be an enrolled reviewer whose token is in the process's
    TUNELINE_REVIEWER_TOKEN (never a parameter: parameters are stored by Prefect)."""
    return rollback_with_approval(model_name, to_version, actor, reason, force)
