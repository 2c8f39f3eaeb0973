"""Rollback: move the champion alias back and record who did it and why."""

from __future__ import annotations

from prefect import flow

from tasks.promote import rollback_model
from tuneline.lineage import ModelVersionRef

__all__ = ["rollback"]


@flow(name="rollback")
def rollback(
    model_name: str, to_version: str | None = None, actor: str = "unknown", reason: str = "manual rollback"
) -> ModelVersionRef:
    """Point `champion` back at `to_version` (default: the `previous` alias)."""
    return rollback_model(model_name, to_version, actor, reason)
