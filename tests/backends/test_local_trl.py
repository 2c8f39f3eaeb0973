"""The local backend (TRL engine) against real S3 (SeaweedFS): training, resume, fallback, re-attach, limits."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from tuneline.backends.base import JobSpec
from tuneline.backends.local.backend import LocalBackend
from tuneline.errors import JobFailedError, ValidationFailedError
from tuneline.lineage import JobState
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

pytestmark = [pytest.mark.service, pytest.mark.slow]


def _train(backend: LocalBackend, spec: JobSpec, sink: Any) -> tuple[str, Any]:
    job_id = backend.submit(spec)
    backend.wait(spec, job_id, sink)
    return job_id, sink


@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_short_training_lowers_validation_loss_and_exports_the_model(
    recording_sink: Any,
    adapter: str,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    lora = {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "learning_rate": 1e-2} if adapter == "lora" else {}
    spec = make_spec(adapter=adapter, max_steps=16, **lora)
    backend = LocalBackend(make_settings(), object_store)
    progress = []
    job_id = backend.submit(spec)
    status = backend.wait(spec, job_id, sink := recording_sink(), on_progress=progress.append)

    assert status.state == JobState.COMPLETED and status.steps == 16
    validation = sink.values("validation_loss")
    assert len(validation) == 4 and validation[-1] < validation[0]
    assert {"train_loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_s"} <= set(
        sink.points[0][1]
    )
    assert [p.step for p in backend.metrics(job_id) if p.name == "train_loss"] == list(range(1, 17))
    assert progress[-1].state == JobState.COMPLETED

    model = backend.fetch_model(spec, job_id)
    assert model.model_uri == spec.output_uri + "model/" and model.steps == 16
    assert model.final_validation_loss == pytest.approx(validation[-1])
    keys = {k.rsplit("/", 1)[-1] for k in object_store.list_keys(model.model_uri)}
    weights = "adapter_model.safetensors" if adapter == "lora" else "model.safetensors"
    assert {weights, "tokenizer.json", "tuneline_model.json", "manifest.json"} <= keys
    checkpoints = {
        k.split("/checkpoints/")[1].split("/")[0]
        for k in object_store.list_keys(spec.output_uri + "checkpoints/")
    }
    assert checkpoints == {"step-12", "step-16"}  # every 4 steps, the last two kept


def test_resume_after_a_crash_ends_with_the_same_losses(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    reference_spec = make_spec()
    _, reference = _train(LocalBackend(make_settings(), object_store), reference_spec, recording_sink())

    spec = make_spec()
    settings = make_settings()
    crashing = LocalBackend(settings, object_store)
    with pytest.raises(JobFailedError, match="simulated crash at step 7"):
        _train(crashing, spec, recording_sink(crash_at_step=7))
    assert crashing.status(spec.identity).state == JobState.FAILED

    # A new process on the same machine: re-attaches and resumes from step-4.
    resumed_backend = LocalBackend(settings, object_store)
    job_id, resumed = _train(resumed_backend, spec, recording_sink())
    assert [step for step, _ in resumed.points] == list(range(5, 13))
    assert resumed.values("train_loss") == pytest.approx(reference.values("train_loss")[4:], rel=1e-6)
    status = resumed_backend.status(job_id)
    assert status.final_validation_loss == pytest.approx(reference.values("validation_loss")[-1], rel=1e-6)
    assert [p.step for p in resumed_backend.metrics(job_id) if p.name == "train_loss"] == list(range(1, 13))


@pytest.mark.parametrize(
    ("adapter", "tune"),
    [
        # packing off: 96 rows / 4 = 24 steps an epoch, so step 12 is mid-epoch -- where the Trainer,
        # resumed at max_steps, would run one more step before it checks the limit
        ("full", {"packing": False}),
        ("lora", {"packing": False}),
        ("full", {}),  # packed: 12 steps end an epoch
        # early stopping ended the run at step 6 of 40: the resume must not train on past it
        ("full", {"max_steps": 40, "eval_every_steps": 2, "early_stopping_patience": 2,
                  "early_stopping_threshold": 100.0}),
    ],
    ids=["full-mid-epoch", "lora-mid-epoch", "full-packed", "full-stopped-early"],
)
def test_a_crash_after_the_last_checkpoint_exports_it_without_another_step(
    recording_sink: Any,
    adapter: str,
    tune: dict[str, Any],
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed between sealing the last checkpoint and the export: the rerun exports that checkpoint
    and trains no step again."""
    from tuneline.backends.local.recipe import TrainingRun

    spec = make_spec(adapter=adapter, **tune)
    last = 6 if "early_stopping_patience" in tune else 12
    settings = make_settings()

    def killed_before_the_export(self: TrainingRun) -> None:
        raise RuntimeError("killed before the export")

    with monkeypatch.context() as patch:
        patch.setattr(TrainingRun, "cleanup", killed_before_the_export)
        with pytest.raises(JobFailedError, match="killed before the export"):
            _train(LocalBackend(settings, object_store), spec, recording_sink())
    first = {p.step for p in LocalBackend(settings, object_store).metrics(spec.identity) if p.name == "train_loss"}
    assert first == set(range(1, last + 1))

    backend = LocalBackend(settings, object_store)
    job_id, resumed = _train(backend, spec, recording_sink())
    assert resumed.values("train_loss") == []  # no step trained again
    status = backend.status(job_id)
    assert status.state == JobState.COMPLETED and status.steps == last
    if last == 6:
        assert "stopped early at step 6" in status.message
    model = backend.fetch_model(spec, job_id)
    assert model.steps == last
    # and what it exported are the sealed checkpoint's weights, not the base model's
    from safetensors.torch import load

    weights = "adapter_model.safetensors" if adapter == "lora" else "model.safetensors"
    exported = load(object_store.get_bytes(model.model_uri + weights))
    sealed = load(object_store.get_bytes(f"{spec.output_uri}checkpoints/step-{last}/{weights}"))
    assert exported.keys() == sealed.keys()
    assert all(torch.equal(exported[name], sealed[name]) for name in sealed)


def test_resume_on_a_new_machine_uses_the_s3_checkpoints(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    spec = make_spec(max_steps=8)
    _, reference = _train(
        LocalBackend(make_settings(), object_store), make_spec(max_steps=8), recording_sink()
    )
    with pytest.raises(JobFailedError):
        _train(LocalBackend(make_settings(), object_store), spec, recording_sink(crash_at_step=6))

    _, resumed = _train(LocalBackend(make_settings(), object_store), spec, recording_sink())
    assert resumed.points[0][0] == 5
    assert resumed.values("validation_loss")[-1] == pytest.approx(
        reference.values("validation_loss")[-1], rel=1e-6
    )


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, reference = _train(LocalBackend(make_settings(), object_store), make_spec(), recording_sink())
    spec = make_spec()
    settings = make_settings()
    with pytest.raises(JobFailedError):
        _train(LocalBackend(settings, object_store), spec, recording_sink(crash_at_step=10))
    # Truncate the newest checkpoint's weights, locally and in S3.
    local = settings.home / "jobs" / spec.identity / "checkpoints" / "step-8" / "model.safetensors"
    local.write_bytes(local.read_bytes()[:100])
    object_store.put_bytes(spec.output_uri + "checkpoints/step-8/model.safetensors", b"truncated")

    with caplog.at_level(logging.WARNING, logger="tuneline.backends"):
        _, resumed = _train(LocalBackend(settings, object_store), spec, recording_sink())
    assert "checkpoint step-8 is incomplete or corrupt" in caplog.text
    assert resumed.points[0][0] == 5  # resumed from step-4
    assert resumed.values("train_loss")[-1] == pytest.approx(reference.values("train_loss")[-1], rel=1e-6)


def test_submit_reattaches_and_a_finished_job_is_not_trained_again(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    spec = make_spec(max_steps=4)
    backend = LocalBackend(make_settings(), object_store)
    job_id, first = _train(backend, spec, recording_sink())
    assert backend.submit(spec) == job_id
    # Even from a machine that never saw the job: the state is read back from S3.
    elsewhere = LocalBackend(make_settings(), object_store)
    assert elsewhere.submit(spec) == job_id
    again = recording_sink()
    status = elsewhere.wait(spec, job_id, again)
    assert status.state == JobState.COMPLETED and again.points == []
    assert elsewhere.fetch_model(spec, job_id).final_train_loss == pytest.approx(
        first.values("train_loss")[-1]
    )


def test_fetch_model_of_an_unfinished_job_fails(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    spec = make_spec()
    backend = LocalBackend(make_settings(), object_store)
    job_id = backend.submit(spec)
    with pytest.raises(JobFailedError, match="has not completed \\(state pending"):
        backend.fetch_model(spec, job_id)


def test_cancel_stops_with_a_checkpoint_and_submit_resumes(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    spec = make_spec(max_steps=8)
    backend = LocalBackend(make_settings(), object_store)
    job_id = backend.submit(spec)

    def cancel_at_step_3(status) -> None:  # noqa: ANN001 - a ProgressCallback
        if status.steps == 3:
            backend.cancel(job_id)

    status = backend.wait(spec, job_id, recording_sink(), on_progress=cancel_at_step_3)
    assert status.state == JobState.STOPPED and status.steps == 3
    backend.submit(spec)
    resumed = recording_sink()
    assert backend.wait(spec, job_id, resumed).state == JobState.COMPLETED
    assert resumed.points[0][0] == 4


def test_early_stopping_ends_the_run(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    # A threshold no improvement can reach: stops after `patience` validations past the first.
    spec = make_spec(
        max_steps=40, eval_every_steps=2, early_stopping_patience=2, early_stopping_threshold=100.0
    )
    backend = LocalBackend(make_settings(), object_store)
    job_id, sink = _train(backend, spec, recording_sink())
    status = backend.status(job_id)
    assert status.state == JobState.COMPLETED and status.steps == 6
    assert "stopped early at step 6" in status.message


def test_validate_lists_every_bad_value(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
    tmp_path: Path,
) -> None:
    backend = LocalBackend(make_settings(), object_store)
    backend.validate(make_spec(adapter="lora", lora={"target_modules": ["q_proj", "v_proj"]}))
    with pytest.raises(ValidationFailedError) as caught:
        backend.validate(
            make_spec(
                adapter="lora",
                max_seq_length=4096,
                lora={"target_modules": ["q_proj", "attn_qkv"]},
                precision="fp16",
            )
        )
    text = str(caught.value)
    assert "max_seq_length=4096 exceeds the base model's max_position_embeddings=512" in text
    assert "['attn_qkv'] are not modules of the base model" in text
    assert "tune.precision 'fp16' needs a CUDA device" in text
    with pytest.raises(ValidationFailedError, match="has no config.json"):
        backend.validate(make_spec(base_model=str(tmp_path)))


def test_total_steps_follow_epochs_when_max_steps_is_unset(
    recording_sink: Any,
    make_settings: Callable[[], Settings],
    make_spec: Callable[..., JobSpec],
    object_store: ObjectStore,
) -> None:
    # 96 training examples, one per row without packing, batch 8, accumulation 2: 6 steps/epoch.
    spec = make_spec(max_steps=None, epochs=0.5, packing=False, batch_size=8, gradient_accumulation_steps=2)
    backend = LocalBackend(make_settings(), object_store)
    job_id, _ = _train(backend, spec, recording_sink())
    assert backend.status(job_id).steps == math.ceil(0.5 * 6)
