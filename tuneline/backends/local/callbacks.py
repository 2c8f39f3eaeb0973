"""The local backend's contracts as ``transformers`` Trainer callbacks.

- :class:`TunelineCallback`: per-step metrics to the job's ``metrics.jsonl`` and the run's
  ``MetricsSink`` (MLflow, batched; TRL's own reporting is off), progress for the UI and the
  status file, cancel (the ``CANCEL`` marker: checkpoint, then stop), early stopping on the
  validation loss (the final weights are those of the stopping step), an evaluation and a
  checkpoint at the last step, and the run state a resume needs (``tuneline_state.json``).
- :class:`CheckpointMirror`: each checkpoint the Trainer writes is sealed with a manifest of
  checksums and mirrored to S3 (:class:`tuneline.backends.local.checkpoints.CheckpointStore`); a resume
  uses the newest one that verifies.

Under ``tune.distributed`` every process runs both callbacks, built with the process's
:class:`~tuneline.backends.local.ranks.Ranks`: only rank 0 writes metrics, status and checkpoints;
the cancel marker is a vote of all ranks, so that every process stops at the same step.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneline.backends.base import JobStatus, MetricsSink, ProgressCallback
from tuneline.backends.local.checkpoints import CheckpointStore
from tuneline.backends.local.job import JobDir
from tuneline.backends.local.ranks import SINGLE, Ranks
from tuneline.lineage import JobState

__all__ = ["RUN_STATE_FILE", "CheckpointMirror", "RunState", "TrainingAlreadyEnded", "TunelineCallback"]

_log = logging.getLogger(__name__)
RUN_STATE_FILE = "tuneline_state.json"
# Trainer log keys -> Tuneline metric names; other numeric keys (rewards/margins, reward, ...) pass as they are.
_RENAMES = {"loss": "train_loss", "eval_loss": "validation_loss"}
_DROPPED = {"epoch", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second",
            "eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "train_loss_total",
            "num_input_tokens_seen"}


class TrainingAlreadyEnded(Exception):  # noqa: N818 - a signal to the recipe, not an error
    """The checkpoint resumed from ended the training (its last step, or early stopping): export it.

    Raised from ``on_train_begin`` -- after the Trainer loaded the checkpoint's weights and state,
    before its loop: resumed at ``max_steps`` in the middle of an epoch, or after early stopping,
    the Trainer would run one step (or more) before it checks for the end.
    """

    def __init__(self, step: int) -> None:
        super().__init__(f"the checkpoint at step {step} ended the training")
        self.step = step


@dataclass
class RunState:
    """What a resumed run needs besides the Trainer's own state; saved in every checkpoint."""

    elapsed_s: float = 0.0
    train_seconds: float = 0.0
    tokens: int = 0
    best_validation: float | None = None
    evals_without_gain: int = 0
    stopped_early: bool = False
    cancelled: bool = False
    last_train_loss: float | None = None
    last_validation_loss: float | None = None

    @classmethod
    def load(cls, directory: Path) -> RunState:
        path = directory / RUN_STATE_FILE
        if not path.is_file():
            return cls()
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def save(self, directory: Path) -> None:
        (directory / RUN_STATE_FILE).write_text(json.dumps(asdict(self)), encoding="utf-8")


class TunelineCallback(TrainerCallback):
    def __init__(
        self,
        *,
        job: JobDir,
        job_id: str,
        run: RunState,
        total_steps: Callable[[], int],
        has_validation: bool,
        early_stopping_patience: int | None,
        early_stopping_threshold: float,
        sink: MetricsSink | None,
        on_progress: ProgressCallback | None,
        ranks: Ranks = SINGLE,
    ) -> None:
        self.job, self.job_id, self.run = job, job_id, run
        self.ranks = ranks
        self.total_steps = total_steps
        self.has_validation = has_validation
        self.patience, self.threshold = early_stopping_patience, early_stopping_threshold
        self.sink, self.on_progress = sink, on_progress
        self._pending: tuple[int, dict[str, float]] | None = None
        self._clock = 0.0
        self._step_started = 0.0
        self._status_written = float("-inf")
        self._tokens_at_step_start = 0

    # --- status ---------------------------------------------------------------------------
    def status(self, state: JobState, steps: int, message: str = "") -> JobStatus:
        return JobStatus(
            job_id=self.job_id,
            state=state,
            message=message,
            steps=steps,
            final_train_loss=self.run.last_train_loss,
            final_validation_loss=self.run.last_validation_loss,
        )

    def _progress(self, status: JobStatus, every_s: float = 0.0) -> None:
        # The status file is for other processes; once a second is plenty.
        if not self.ranks.primary:
            return
        now = time.monotonic()
        if now - self._status_written >= every_s:
            self.job.write_status(status)
            self._status_written = now
        if self.on_progress is not None:
            self.on_progress(status)

    # --- metrics --------------------------------------------------------------------------
    def flush(self) -> None:
        """Write the completed step's metrics once: metrics.jsonl, then the sink (rank 0 only)."""
        if self._pending is None or not self.ranks.primary:
            self._pending = None
            return
        step, metrics = self._pending
        self._pending = None
        with self.job.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.sink is not None:
            self.sink.log_metrics(metrics, step)

    def _metrics_of(self, step: int) -> dict[str, float]:
        if self._pending is None or self._pending[0] != step:
            self.flush()
            self._pending = (step, {})
        return self._pending[1]

    # --- the Trainer's events --------------------------------------------------------------
    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self._clock = time.perf_counter() - self.run.elapsed_s
        total = self.total_steps()
        self._progress(self.status(JobState.RUNNING, state.global_step, f"step {state.global_step}/{total}"))
        if state.global_step > 0 and (state.global_step >= total or self.run.stopped_early):
            raise TrainingAlreadyEnded(state.global_step)

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        self.flush()
        self._step_started = time.perf_counter()
        self._tokens_at_step_start = state.num_input_tokens_seen

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        seconds = time.perf_counter() - self._step_started
        self.run.train_seconds += seconds
        self.run.elapsed_s = time.perf_counter() - self._clock
        metrics = self._metrics_of(state.global_step)
        metrics["elapsed_s"] = self.run.elapsed_s
        metrics["step_seconds"] = seconds
        # The Trainer counts the non-padding input tokens it has seen (kept in its checkpoints).
        tokens = state.num_input_tokens_seen - self._tokens_at_step_start
        if tokens > 0 and seconds > 0:
            self.run.tokens += int(tokens)
            metrics["tokens_per_second"] = tokens / seconds
        total = self.total_steps()
        if state.global_step >= total:
            control.should_save = True
            if self.has_validation:
                control.should_evaluate = True
        self._progress(
            self.status(JobState.RUNNING, state.global_step, f"step {state.global_step}/{total}"),
            # Under tune.distributed the launching process reads progress from this file: each step.
            every_s=0.0 if self.ranks.distributed else 1.0,
        )
        if self.ranks.any(self.job.cancel_file.exists()):
            self.run.cancelled = True
            control.should_save = True
            control.should_training_stop = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kw: Any) -> None:
        if logs and "train_samples_per_second" in logs:
            return  # the run's summary (a mean loss over all steps), not a step
        metrics = self._metrics_of(state.global_step)
        for key, value in (logs or {}).items():
            if key in _DROPPED or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if not math.isfinite(float(value)):
                continue
            metrics[_RENAMES.get(key, key)] = float(value)
        if "train_loss" in metrics:
            self.run.last_train_loss = metrics["train_loss"]

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: dict[str, float] | None = None, **kw: Any) -> None:
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        self.run.last_validation_loss = float(loss)
        best = self.run.best_validation
        if best is None or loss < best - self.threshold:
            self.run.best_validation = float(loss)
            self.run.evals_without_gain = 0
            return
        self.run.evals_without_gain += 1
        if self.patience is not None and self.run.evals_without_gain >= self.patience:
            self.run.stopped_early = True
            control.should_save = True
            control.should_training_stop = True


class CheckpointMirror(TrainerCallback):
    """Seal each Trainer checkpoint (run state + manifest) as ``step-N`` and mirror it to S3."""

    def __init__(
        self,
        checkpoints: CheckpointStore,
        run: RunState,
        before_seal: Callable[[], None],
        ranks: Ranks = SINGLE,
    ) -> None:
        self.checkpoints, self.run, self.before_seal = checkpoints, run, before_seal
        self.ranks = ranks

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any) -> None:
        # Every rank writes its own RNG state into the checkpoint: rank 0 seals it once all have.
        self.ranks.barrier()
        if not self.ranks.primary:
            return
        written = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        # The step's metrics are recorded before its checkpoint exists: a resume from it never
        # lacks a step it will not repeat.
        self.before_seal()
        staging = self.checkpoints.staging_dir(state.global_step)
        shutil.copytree(written, staging, dirs_exist_ok=True)
        self.run.save(staging)
        uri = self.checkpoints.commit(staging, state.global_step)
        shutil.rmtree(written, ignore_errors=True)  # the sealed copy is the one a resume reads
        _log.info("checkpoint step-%d saved to %s", state.global_step, uri)
