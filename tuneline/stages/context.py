"""What every stage needs: settings, the object store, the MLflow client and the run to log to.

Stages log through ``MlflowClient`` with explicit run ids rather than mlflow's fluent API, whose
"active run" is per thread: concurrent Prefect tasks must never log into each other's runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from mlflow.tracking import MlflowClient

from tuneline.config import RunConfig
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore
from tuneline.storage.tracking import (
    configure_mlflow,
    get_or_create_experiment,
    log_params_safe,
    unreachable_as_service_error,
)

__all__ = ["StageContext", "end_run", "start_lifecycle_run"]


@dataclass
class StageContext:
    settings: Settings
    run_id: str | None = None

    @cached_property
    def store(self) -> ObjectStore:
        return ObjectStore(self.settings)

    @cached_property
    def mlflow(self) -> MlflowClient:
        configure_mlflow(self.settings)
        return MlflowClient(tracking_uri=self.settings.mlflow_tracking_uri)


def _flatten(prefix: str, value: object, out: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = str(value)[:500]


@unreachable_as_service_error()
def start_lifecycle_run(
    ctx: StageContext, config: RunConfig, run_name: str | None = None, tags: dict[str, str] | None = None
) -> str:
    """Create the MLflow run that every stage of one lifecycle run logs into."""
    experiment_id = get_or_create_experiment(config.name, ctx.mlflow)
    run = ctx.mlflow.create_run(
        experiment_id,
        run_name=run_name,
        tags={
            "tuneline.config_hash": config.config_hash(),
            "tuneline.backend": config.tune.backend,
            "tuneline.base_model": config.tune.base_model,
            **(tags or {}),
        },
    )
    params: dict[str, str] = {}
    _flatten("", config.model_dump(mode="json", exclude={"description"}), params)
    log_params_safe(ctx.mlflow, run.info.run_id, params, ctx.settings.secret_values())
    ctx.run_id = run.info.run_id
    return run.info.run_id


@unreachable_as_service_error()
def end_run(ctx: StageContext, status: str = "FINISHED") -> None:
    if ctx.run_id:
        ctx.mlflow.set_terminated(ctx.run_id, status=status)

