"""tune.distributed: the local TRL job in 2 CPU processes (torchrun, gloo) on the tiny model, against
real S3 (SeaweedFS): it completes, records each step's loss once, writes and mirrors checkpoints, and
a run that crashed resumes -- every rank -- from the newest checkpoint with the same losses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.errors import JobFailedError
from tuneline.lineage import JobState
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.service, pytest.mark.slow]

DDP = {"distributed": {"processes": 2, "strategy": "ddp"}, "device": "cpu"}


def _checkpoint_steps(store: ObjectStore, spec: JobSpec) -> set[int]:
    return {
        int(key.split("/checkpoints/step-")[1].split("/")[0])
        for key in store.list_keys(spec.output_uri + "checkpoints/")
        if key.endswith("/manifest.json")
    }


def test_two_processes_train_checkpoint_and_resume_after_a_crash(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    reference_spec = make_spec(max_steps=8, **DDP)
    backend = LocalBackend(make_settings(), object_store)
    backend.validate(reference_spec)
    progress: list[Any] = []
    job_id = backend.submit(reference_spec)
    status = backend.wait(reference_spec, job_id, reference := recording_sink(), on_progress=progress.append)

    assert status.state == JobState.COMPLETED and status.steps == 8
    assert [step for step, _ in reference.points] == list(range(1, 9))  # rank 0's metrics, each step once
    losses = reference.values("train_loss")
    assert len(losses) == 8 and all(loss > 0 for loss in losses)
    assert len(reference.values("validation_loss")) == 2
    assert {p.steps for p in progress if p.state == JobState.RUNNING} >= {8}
    assert _checkpoint_steps(object_store, reference_spec) == {4, 8}
    model = backend.fetch_model(reference_spec, job_id)
    assert model.steps == 8 and model.final_train_loss == pytest.approx(losses[-1])
    assert object_store.exists(model.model_uri + "model.safetensors")
    # One copy of each rank's RNG state in the sealed checkpoint: rank 0 sealed it after both wrote.
    keys = {k.rsplit("/", 1)[-1] for k in object_store.list_keys(reference_spec.output_uri + "checkpoints/step-8/")}
    assert {"rng_state_0.pth", "rng_state_1.pth", "model.safetensors", "manifest.json"} <= keys

    spec = make_spec(max_steps=8, **DDP)
    settings = make_settings()
    with pytest.raises(JobFailedError, match="simulated crash at step 6"):
        _ = LocalBackend(settings, object_store).wait(
            spec, LocalBackend(settings, object_store).submit(spec), recording_sink(crash_at_step=6)
        )
    # The workers were stopped; where they got to before that depends on timing: at least step-4.
    newest = max(_checkpoint_steps(object_store, spec))
    assert newest >= 4

    resumed_backend = LocalBackend(settings, object_store)
    resumed_backend.submit(spec)
    status = resumed_backend.wait(spec, spec.identity, resumed := recording_sink())
    assert status.state == JobState.COMPLETED and status.steps == 8
    assert [step for step, _ in resumed.points] == list(range(newest + 1, 9))
    assert resumed.values("train_loss") == pytest.approx(losses[newest:], rel=1e-5)
    assert status.final_validation_loss == pytest.approx(reference.values("validation_loss")[-1], rel=1e-5)
    assert [p.step for p in resumed_backend.metrics(spec.identity) if p.name == "train_loss"] == list(range(1, 9))


def test_two_processes_stop_together_on_cancel_with_a_checkpoint_and_resume(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    """``cancel`` under tune.distributed: the ranks vote on the cancel file each step, so both stop
    at the same step, saving a checkpoint there; a later submit resumes every rank from it."""
    spec = make_spec(max_steps=12, **DDP)
    backend = LocalBackend(make_settings(), object_store)
    job_id = backend.submit(spec)

    def cancel_once_training(status: Any) -> None:
        if status.state == JobState.RUNNING and status.steps >= 2:
            backend.cancel(job_id)

    status = backend.wait(spec, job_id, recording_sink(), on_progress=cancel_once_training)
    assert status.state == JobState.STOPPED and 2 <= status.steps < 12, status
    stopped_at = status.steps
    assert f"cancelled at step {stopped_at}" in status.message
    assert stopped_at in _checkpoint_steps(object_store, spec)

    backend.submit(spec)
    resumed = recording_sink()
    final = backend.wait(spec, job_id, resumed)
    assert final.state == JobState.COMPLETED and final.steps == 12
    assert [step for step, _ in resumed.points] == list(range(stopped_at + 1, 13))
