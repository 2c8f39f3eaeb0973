"""Live training progress: what a person watching a tune run sees (step/total, loss, tokens/s,
elapsed, ETA) and the checkpoints a run left, with their step and validation loss.

The tracker is fed from two places the backends already report to, so it needs nothing new from
them: the progress hook (:data:`~tuneline.backends.base.ProgressCallback`, a ``JobStatus`` per
step: state, steps, the latest losses) and the training metrics (``MetricsSink.log_metrics``:
``train_loss``, ``validation_loss``, ``tokens_per_second`` per step; see
:func:`tuneline.storage.tracking.listen_to_metrics`). What a backend must keep emitting for these
views: ``JobStatus.steps`` and ``state``; the metric names ``train_loss``, ``validation_loss``
and ``tokens_per_second`` at their optimizer step; checkpoints under
``<output_uri>/checkpoints/step-N/``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from pydantic import BaseModel, ConfigDict

from tuneline.backends.base import JobStatus

__all__ = ["CheckpointRow", "ProgressTracker", "TrainingProgress", "checkpoint_rows", "format_duration"]

_STEP_DIR = re.compile(r"/step-(\d+)/")


def format_duration(seconds: float | None) -> str:
    """``75.2`` -> ``1:15``; ``3725`` -> ``1:02:05``; None -> ``?``."""
    if seconds is None:
        return "?"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingProgress(BaseModel):
    """One snapshot of a training job, as the Prefect progress artifact shows it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    state: str
    step: int
    total_steps: int | None = None
    train_loss: float | None = None
    validation_loss: float | None = None
    tokens_per_second: float | None = None
    elapsed_s: float
    eta_s: float | None = None
    """Seconds left at the rate of the steps seen so far; None until two steps were seen."""

    @property
    def percent(self) -> float | None:
        if not self.total_steps:
            return None
        return min(100.0, 100.0 * self.step / self.total_steps)

    def describe(self) -> str:
        """``step 120/300 · loss 0.4128 · val 0.5012 · 23,100 tokens/s · elapsed 0:12 · ETA 0:18``."""
        parts = [f"step {self.step}/{self.total_steps}" if self.total_steps else f"step {self.step}"]
        if self.train_loss is not None:
            parts.append(f"loss {self.train_loss:.4f}")
        if self.validation_loss is not None:
            parts.append(f"val loss {self.validation_loss:.4f}")
        if self.tokens_per_second is not None:
            parts.append(f"{self.tokens_per_second:,.0f} tokens/s")
        parts.append(f"elapsed {format_duration(self.elapsed_s)}")
        parts.append(f"ETA {format_duration(self.eta_s)}" if self.state == "running" else self.state)
        return " · ".join(parts)


class CheckpointRow(BaseModel):
    """A checkpoint a job left: its step, the validation loss at that step, where it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: int
    validation_loss: float | None
    uri: str


class ProgressTracker:
    """Turns progress-hook statuses and training metrics into :class:`TrainingProgress` snapshots.

    Thread-safe: metrics arrive on the training thread, statuses may come from a poller.
    """

    def __init__(self, total_steps: int | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.total_steps = total_steps
        self._clock = clock
        self._started = clock()
        self._lock = threading.Lock()
        self._first: tuple[int, float] | None = None  # (step, time) of the first step seen
        self._step = 0
        self._state = "pending"
        self._train_loss: float | None = None
        self._validation_loss: float | None = None
        self._tokens_per_second: float | None = None
        self.validation_by_step: dict[int, float] = {}

    def on_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        with self._lock:
            if "train_loss" in metrics:
                self._train_loss = float(metrics["train_loss"])
            if "validation_loss" in metrics:
                self._validation_loss = float(metrics["validation_loss"])
                self.validation_by_step[step] = self._validation_loss
            if "tokens_per_second" in metrics:
                self._tokens_per_second = float(metrics["tokens_per_second"])
            self._advance(step)

    def on_status(self, status: JobStatus) -> TrainingProgress:
        with self._lock:
            self._state = str(status.state)
            if status.final_train_loss is not None:
                self._train_loss = status.final_train_loss
            if status.final_validation_loss is not None:
                self._validation_loss = status.final_validation_loss
            self._advance(status.steps)
            return self._snapshot()

    def snapshot(self) -> TrainingProgress:
        with self._lock:
            return self._snapshot()

    def _advance(self, step: int) -> None:
        if step > self._step or self._first is None:
            now = self._clock()
            if self._first is None:
                # A resumed job starts past 0: the rate counts only the steps this attempt ran.
                self._first = (step, now)
            self._step = max(self._step, step)

    def _snapshot(self) -> TrainingProgress:
        now = self._clock()
        eta = None
        if self._first is not None and self.total_steps:
            first_step, first_time = self._first
            done, spent = self._step - first_step, now - first_time
            if done > 0 and spent > 0:
                eta = max(0.0, (self.total_steps - self._step) * spent / done)
        return TrainingProgress(
            state=self._state,
            step=self._step,
            total_steps=self.total_steps,
            train_loss=self._train_loss,
            validation_loss=self._validation_loss,
            tokens_per_second=self._tokens_per_second,
            elapsed_s=now - self._started,
            eta_s=eta,
        )


def checkpoint_rows(keys: Iterable[str], prefix_uri: str, validation_by_step: Mapping[int, float]) -> list[CheckpointRow]:
    """One row per ``step-N/`` directory among ``keys`` (object keys under ``prefix_uri``), by step.

    A checkpoint's validation loss is the last one measured at or before its step (validation
    runs every ``eval_every_steps``, checkpoints every ``checkpoint_every_steps``).
    """
    bucket_prefix = prefix_uri.rstrip("/") + "/"
    steps: dict[int, str] = {}
    for key in keys:
        match = _STEP_DIR.search("/" + key)
        if match:
            step = int(match.group(1))
            head = key[: key.index(f"step-{step}/")]
            steps.setdefault(step, f"{_bucket_of(bucket_prefix)}{head}step-{step}/")
    measured = sorted(validation_by_step)
    rows = []
    for step in sorted(steps):
        at_or_before = [s for s in measured if s <= step]
        loss = validation_by_step[at_or_before[-1]] if at_or_before else None
        rows.append(CheckpointRow(step=step, validation_loss=loss, uri=steps[step]))
    return rows


def _bucket_of(prefix_uri: str) -> str:
    """``s3://bucket/a/b/`` -> ``s3://bucket/``."""
    rest = prefix_uri.removeprefix("s3://")
    return f"s3://{rest.split('/', 1)[0]}/"
