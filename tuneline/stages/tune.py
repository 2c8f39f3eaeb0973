"""Stage 2, tune: one backend-agnostic path from a dataset version to a candidate model.

Whatever the backend, the same things land in MLflow: hyperparameters, step-wise metrics (batched),
the final losses, a loss-curve figure, and the model itself.
"""

from __future__ import annotations

import io
import logging
import re

from tuneline.backends.base import JobSpec, JobStatus, ProgressCallback, TuningBackend
from tuneline.backends.registry import provider_for
from tuneline.config import RunConfig
from tuneline.errors import ConfigError, JobFailedError
from tuneline.governance.registry import ModelRegistry
from tuneline.lineage import DatasetVersion, JobState, TrainedModel
from tuneline.stages.context import StageContext
from tuneline.storage.tracking import BatchedMetricsLogger, unreachable_as_service_error
from tuneline.tags import (
    BACKEND_TAG,
    BASE_MODEL_VERSION_TAG,
    JOB_ID_TAG,
    JOB_IDENTITY_TAG,
    MODEL_URI_TAG,
)

__all__ = ["cancel_tune", "check_model_lifecycle", "job_id_for", "job_spec", "make_backend", "resolve_base_model", "run_tune"]

_log = logging.getLogger(__name__)

_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[A-Za-z0-9_-]+)|/(?P<version>[0-9]+))$")


def check_model_lifecycle(config: RunConfig) -> str | None:
    """Raise ``ModelRetiredError`` for a base model past its end of life; the warning for a
    legacy one; None otherwise (and for backends whose models have no lifecycle)."""
    preflight = getattr(provider_for(config), "preflight", None)
    return preflight(config) if preflight is not None else None


@unreachable_as_service_error()
def resolve_base_model(ctx: StageContext, config: RunConfig) -> RunConfig:
    """``config`` with a ``tune.base_model`` that names a registered version (``models:/<name>@<alias>``
    or ``models:/<name>/<version>``) replaced by the weights that version holds; other configs as they are.

    A Bedrock base model past its end of life is refused (``ModelRetiredError``), a legacy one
    logged as a warning: the lifecycle calls this first, before prepare.

    This is how a preference (DPO) or GRPO run starts from the SFT champion. The alias is read
    once, here: every later stage uses the same weights even if the alias moves meanwhile, and
    the run is tagged with the version it started from.
    """
    # A base model past its end of life is refused here, before prepare spends anything on it.
    if warning := check_model_lifecycle(config):
        _log.warning("%s", warning)
    named = config.tune.base_model
    match = _REGISTERED.match(named)
    if match is None:
        return config
    if config.tune.backend != "local":
        raise ConfigError(
            f"tune.base_model {named!r}: a registered model as the base is for the local backend; "
            "Bedrock's base_model is a Bedrock model id"
        )
    registry = ModelRegistry(ctx.mlflow)
    name, alias, number = match["name"], match["alias"], match["version"]
    version = registry.alias_version(name, alias) if alias else registry.version(name, number)
    if version is None:
        raise ConfigError(
            f"tune.base_model {named!r}: the registry has no such version; train and promote one first "
            f"(e.g. `make run` for the example), or point base_model at a model directory"
        )
    tags = version.tags or {}
    weights = tags.get(MODEL_URI_TAG)
    if tags.get(BACKEND_TAG) != "local" or not weights:
        raise ConfigError(
            f"tune.base_model {named!r} is version {version.version} of {name}, which holds no local weights "
            f"({BACKEND_TAG}={tags.get(BACKEND_TAG)!r}): name a version the local backend trained"
        )
    if ctx.run_id:
        ctx.mlflow.set_tag(ctx.run_id, BASE_MODEL_VERSION_TAG, f"models:/{name}/{version.version}")
    return config.model_copy(update={"tune": config.tune.model_copy(update={"base_model": weights})})


def make_backend(ctx: StageContext, config: RunConfig) -> TuningBackend:
    return provider_for(config).tuner(ctx.settings, ctx.store)


def job_spec(ctx: StageContext, config: RunConfig, dataset: DatasetVersion) -> JobSpec:
    spec = JobSpec(name=config.name, dataset=dataset, tune=config.tune, output_uri="s3://placeholder/")
    return spec.model_copy(update={"output_uri": ctx.store.uri(f"runs/{config.name}/{spec.identity}/")})


@unreachable_as_service_error()
def job_id_for(ctx: StageContext, config: RunConfig, dataset: DatasetVersion) -> str:
    """The backend's id of the job this config and dataset identify (whether or not it exists)."""
    return provider_for(config).job_id(job_spec(ctx, config, dataset))


def cancel_tune(
    ctx: StageContext, config: RunConfig, dataset: DatasetVersion, backend: TuningBackend | None = None
) -> str:
    """Stop the job a cancelled run was waiting on (a paid Bedrock job must not run on unwatched)."""
    job_id = job_id_for(ctx, config, dataset)
    (backend or make_backend(ctx, config)).cancel(job_id)
    return job_id


def run_tune(
    ctx: StageContext,
    config: RunConfig,
    dataset: DatasetVersion,
    on_progress: ProgressCallback | None = None,
) -> TrainedModel:
    backend = make_backend(ctx, config)
    spec = job_spec(ctx, config, dataset)
    backend.validate(spec)
    describe = getattr(backend, "describe_request", None)
    if ctx.run_id and describe is not None:
        # The exact request a managed backend sends (Bedrock: CreateModelCustomizationJob; no
        # secrets in it), next to the run, before it is sent.
        ctx.mlflow.log_dict(ctx.run_id, describe(spec), "tune/request.json")
    job_id = backend.submit(spec)
    if ctx.run_id:
        ctx.mlflow.set_tag(ctx.run_id, JOB_ID_TAG, job_id)
        ctx.mlflow.set_tag(ctx.run_id, JOB_IDENTITY_TAG, spec.identity)
    if ctx.run_id:
        # A retried or resumed job re-emits the steps after its last checkpoint: log each once.
        with BatchedMetricsLogger(ctx.mlflow, ctx.run_id, skip_logged=True) as sink:
            status = backend.wait(spec, job_id, sink=sink, on_progress=on_progress)
    else:
        status = backend.wait(spec, job_id, on_progress=on_progress)
    if status.state is not JobState.COMPLETED:
        raise JobFailedError(f"tuning job {job_id} ended {status.state}: {status.message}")
    model = backend.fetch_model(spec, job_id)
    if ctx.run_id:
        model = _log_model(ctx, config, model, backend, job_id, status)
    return model


def _log_model(
    ctx: StageContext, config: RunConfig, model: TrainedModel, backend: TuningBackend, job_id: str, status: JobStatus
) -> TrainedModel:
    run_id = ctx.run_id
    assert run_id is not None
    final = {
        "tune.final_train_loss": model.final_train_loss,
        "tune.final_validation_loss": model.final_validation_loss,
        "tune.steps": float(model.steps),
        "tune.tokens_per_second": model.tokens_per_second,
    }
    for key, value in final.items():
        if value is not None:
            ctx.mlflow.log_metric(run_id, key, float(value))
    ctx.mlflow.log_dict(run_id, model.model_dump(mode="json"), "tune/trained_model.json")
    points = backend.metrics(job_id)
    if points:
        ctx.mlflow.log_image(run_id, _loss_curve_png(points), "tune/loss_curve.png")
    mlflow_model_uri = provider_for(config).log_model(
        config, model, mlflow=ctx.mlflow, run_id=run_id, settings=ctx.settings, store=ctx.store
    )
    return model.model_copy(update={"mlflow_model_uri": mlflow_model_uri})


def _loss_curve_png(points):  # -> PIL.Image.Image
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    series: dict[str, list[tuple[int, float]]] = {}
    for p in points:
        if p.name.endswith("loss"):
            series.setdefault(p.name, []).append((p.step, p.value))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    for name, values in sorted(series.items()):
        steps, losses = zip(*sorted(values), strict=True)
        ax.plot(steps, losses, label=name, marker="." if len(values) < 30 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Training and validation loss")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf)
