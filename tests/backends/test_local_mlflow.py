"""The local backend through the tune stage into a real MLflow run: a resumed job logs each step once."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tuneline.backends.base import JobSpec, JobStatus
from tuneline.config import RunConfig
from tuneline.errors import JobFailedError
from tuneline.lineage import JobState
from tuneline.settings import Settings
from tuneline.stages.context import StageContext
from tuneline.stages.tune import run_tune
from tuneline.storage.tracking import get_or_create_experiment

pytestmark = [pytest.mark.service, pytest.mark.slow]

STEP_METRICS = ("train_loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_s")


def _crash_once_at(step: int) -> Callable[[JobStatus], None]:
    """A progress callback that fails the training loop when it reports ``step`` (a crash)."""

    def on_progress(status: JobStatus) -> None:
        if status.state is JobState.RUNNING and status.steps == step:
            raise RuntimeError(f"simulated crash at step {step}")

    return on_progress


def test_a_resumed_job_logs_each_step_once_in_the_mlflow_run(
    stack_settings: Settings,
    make_spec: Callable[..., JobSpec],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    spec = make_spec()  # 12 steps, a checkpoint every 4, validation every 4
    ctx = StageContext(stack_settings.model_copy(update={"home": Path(tmp_path_factory.mktemp("home"))}))
    experiment = get_or_create_experiment("local-resume-tests", ctx.mlflow)
    ctx.run_id = ctx.mlflow.create_run(experiment).info.run_id
    config = RunConfig(name=f"resume-{uuid.uuid4().hex[:8]}", data={"source": "unused.jsonl"}, tune=spec.tune)

    # The first attempt logs steps 1-6 and dies at 7; the retry resumes from the step-4 checkpoint
    # and trains steps 5-12 again.
    with pytest.raises(JobFailedError, match="simulated crash at step 7"):
        run_tune(ctx, config, spec.dataset, on_progress=_crash_once_at(7))
    # Progress reports a step as its optimizer step ends, before the Trainer logs it: steps 1-6 are in.
    logged = [m.step for m in ctx.mlflow.get_metric_history(ctx.run_id, "train_loss")]
    assert sorted(logged) == list(range(1, 7))

    model = run_tune(ctx, config, spec.dataset)

    assert model.steps == 12
    for key in STEP_METRICS:
        steps = sorted(m.step for m in ctx.mlflow.get_metric_history(ctx.run_id, key))
        assert steps == list(range(1, 13)), key
    validation = sorted(m.step for m in ctx.mlflow.get_metric_history(ctx.run_id, "validation_loss"))
    assert validation == [4, 8, 12]
