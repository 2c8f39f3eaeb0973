"""Live training progress: step/total, loss, tokens/s, elapsed and ETA from the progress hook and
the training metrics; checkpoints with their step and validation loss."""

from __future__ import annotations

import pytest

from tuneline.backends.base import JobStatus
from tuneline.lineage import JobState
from tuneline.stages.progress import ProgressTracker, checkpoint_rows, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def status(step: int, state: JobState = JobState.RUNNING, **losses: float) -> JobStatus:
    return JobStatus(job_id="job-1", state=state, steps=step, **losses)


def test_progress_has_step_loss_throughput_elapsed_and_eta() -> None:
    clock = Clock()
    tracker = ProgressTracker(total_steps=300, clock=clock)
    tracker.on_status(status(0))
    clock.now += 10
    tracker.on_metrics({"train_loss": 0.9, "tokens_per_second": 23100.0, "learning_rate": 1e-3}, step=100)
    progress = tracker.on_status(status(100, final_train_loss=0.9))

    assert (progress.step, progress.total_steps, progress.percent) == (100, 300, pytest.approx(100 / 3))
    assert progress.train_loss == 0.9 and progress.tokens_per_second == 23100.0
    assert progress.elapsed_s == pytest.approx(10)
    assert progress.eta_s == pytest.approx(20)  # 200 steps left at 10 steps/s
    assert progress.describe() == "step 100/300 · loss 0.9000 · 23,100 tokens/s · elapsed 0:10 · ETA 0:20"


def test_a_resumed_job_rates_only_the_steps_this_attempt_ran() -> None:
    clock = Clock()
    tracker = ProgressTracker(total_steps=300, clock=clock)
    tracker.on_status(status(200))  # resumed from a checkpoint at step 200
    clock.now += 5
    progress = tracker.on_status(status(250))
    assert progress.eta_s == pytest.approx(5)  # 50 steps in 5 s, 50 left


def test_no_eta_before_two_steps_or_without_a_total() -> None:
    assert ProgressTracker(total_steps=10).on_status(status(0)).eta_s is None
    unknown = ProgressTracker(total_steps=None).on_status(status(7))
    assert unknown.eta_s is None and unknown.percent is None
    assert unknown.describe().startswith("step 7 ·")


def test_a_finished_job_says_so_instead_of_an_eta() -> None:
    tracker = ProgressTracker(total_steps=10)
    done = tracker.on_status(status(10, JobState.COMPLETED, final_validation_loss=0.5))
    assert done.describe().endswith("completed")
    assert "val loss 0.5000" in done.describe()


def test_checkpoints_carry_the_validation_loss_measured_at_or_before_their_step() -> None:
    prefix = "s3://bucket/runs/m/abc/checkpoints/"
    keys = [
        "runs/m/abc/checkpoints/step-50/weights.safetensors",
        "runs/m/abc/checkpoints/step-50/MANIFEST.json",
        "runs/m/abc/checkpoints/step-100/weights.safetensors",
        "runs/m/abc/checkpoints/step-10/weights.safetensors",
    ]
    rows = checkpoint_rows(keys, prefix, {25: 0.8, 50: 0.6, 75: 0.55})
    assert [(r.step, r.validation_loss) for r in rows] == [(10, None), (50, 0.6), (100, 0.55)]
    assert rows[1].uri == "s3://bucket/runs/m/abc/checkpoints/step-50/"


@pytest.mark.parametrize(("seconds", "text"), [(None, "?"), (0.4, "0:00"), (75.2, "1:15"), (3725, "1:02:05")])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text
