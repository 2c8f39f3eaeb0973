"""``tune.distributed``: the same local TRL job in several processes, started by torchrun.

The calling process (the tune stage's) keeps the job: it holds the job's lock, chooses the
checkpoint to resume from (:meth:`TrainingRun.load_checkpoint`, so every rank resumes from the same
one), mirrors the base model into the cache once, then runs

    python -m torch.distributed.run --standalone --nproc-per-node N \\
        -m tuneline.backends.local.worker --job-dir <job> --resume <step-dir | none>

and waits. Each rank builds the same :class:`~tuneline.backends.local.recipe.TrainingRun`; the
Trainer (through accelerate) joins them in one process group -- gloo between CPU processes, NCCL
between GPUs -- and wraps the model in DDP, or FSDP2 for strategy ``fsdp``. Only rank 0 writes
``metrics.jsonl``, the status file, the checkpoints (sealed and mirrored to S3 once every rank has
written its RNG state) and the model; this process forwards rank 0's metrics lines to the
``MetricsSink`` (MLflow) and its status to ``on_progress``. A sink or progress callback that raises,
or this process being stopped, ends the workers (SIGTERM to their process group, then SIGKILL); a
worker that fails ends the others (torchrun) and the job fails with the tail of ``workers.log``.

Refused before training, naming the field: ``fsdp`` without CUDA GPUs (CPU processes run ``ddp``
over gloo only), ``fsdp`` over fewer than 2 GPUs, and more processes than CUDA GPUs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tuneline.backends.base import JobStatus
from tuneline.backends.local.hf_models import resolve_model_dir
from tuneline.backends.local.recipe import TrainingRun
from tuneline.backends.local.worker import RESULT_FILE
from tuneline.config import LocalTuneConfig
from tuneline.errors import BackendError
from tuneline.lineage import JobState

__all__ = ["RESULT_FILE", "distributed_problems", "resolve_processes", "torchrun_command", "train_in_processes"]

_log = logging.getLogger(__name__)
WORKER_LOG = "workers.log"
_POLL_S = 0.2
_GRACE_S = 10.0


def _cuda_gpus(cfg: LocalTuneConfig) -> int:
    import torch

    return torch.cuda.device_count() if cfg.device != "cpu" and torch.cuda.is_available() else 0


def resolve_processes(cfg: LocalTuneConfig) -> int:
    """How many training processes ``cfg`` asks for here ('auto': one per CUDA GPU, else 1)."""
    spread = cfg.distributed
    if spread is None:
        return 1
    if spread.processes == "auto":
        return max(1, _cuda_gpus(cfg))
    return int(spread.processes)


def distributed_problems(cfg: LocalTuneConfig) -> list[str]:
    """What keeps ``tune.distributed`` from running on this machine, each naming what to write."""
    spread = cfg.distributed
    if spread is None:
        return []
    gpus = _cuda_gpus(cfg)
    processes = resolve_processes(cfg)
    problems: list[str] = []
    if spread.strategy == "fsdp":
        if gpus == 0:
            why = "tune.device is 'cpu'" if cfg.device == "cpu" else "no CUDA GPU is available"
            problems.append(
                f"tune.distributed.strategy 'fsdp' needs CUDA GPUs ({why}; CPU processes talk over gloo, "
                "which Tuneline runs as ddp only): use strategy 'ddp' on this machine"
            )
        elif processes < 2:
            problems.append(
                "tune.distributed.strategy 'fsdp' shards over 2 or more GPUs and this runs 1 process: use "
                "strategy 'ddp', or leave tune.distributed unset"
            )
    if gpus and processes > gpus:
        problems.append(
            f"tune.distributed.processes {processes} exceeds the {gpus} CUDA GPU(s) here (one process per "
            f"GPU): use processes: {gpus}, or 'auto'"
        )
    if cfg.batch_size % processes:
        problems.append(
            f"tune.batch_size {cfg.batch_size} does not split evenly over the {processes} processes "
            f"tune.distributed.processes {spread.processes!r} gives here: use a multiple of {processes}"
        )
    return problems


def torchrun_command(job_root: Path, processes: int, resume: Path | None) -> list[str]:
    """The launch: torchrun (this Python's) on one machine, the worker module in every process."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone",  # a rendezvous on a free local port: parallel jobs do not collide
        f"--nproc-per-node={processes}",
        "-m", "tuneline.backends.local.worker",
        "--job-dir", str(job_root),
        "--resume", str(resume) if resume is not None else "none",
    ]


class _Forwarder:
    """Rank 0's metrics lines and status file, passed on to the sink and the progress callback."""

    def __init__(self, run: TrainingRun) -> None:
        self.run = run
        self.offset = run.job.metrics_file.stat().st_size if run.job.metrics_file.is_file() else 0
        self.progress: tuple[int, str] | None = None

    def poll(self) -> None:
        job = self.run.job
        if self.run.on_progress is not None:
            status = job.read_status()  # written atomically by rank 0 (JobDir.write_status)
            if status is not None and status.state == JobState.RUNNING and (status.steps, status.message) != self.progress:
                self.progress = (status.steps, status.message)
                self.run.on_progress(status)
        if not job.metrics_file.is_file():
            return
        with job.metrics_file.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            row = json.loads(line)
            step = row.pop("step")
            if self.run.sink is not None:
                self.run.sink.log_metrics(row, step)


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return "(no output)"
    return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def train_in_processes(run: TrainingRun, processes: int) -> JobStatus:
    """Train ``run``'s job in ``processes`` torchrun processes; rank 0's final status."""
    problems = distributed_problems(run.cfg)
    if problems:
        raise BackendError("; ".join(problems))
    job = run.job
    resume = run.load_checkpoint()  # chosen once, here: every rank resumes from this directory
    # Mirrored once into the cache before N processes look for it (an s3:// base model).
    resolve_model_dir(run.cfg.base_model, run.store, run.settings.home / "cache" / "models")
    result = job.root / RESULT_FILE
    result.unlink(missing_ok=True)
    forwarder = _Forwarder(run)
    env = {**os.environ, **run.settings.as_env(), "PYTHONUNBUFFERED": "1"}
    command = torchrun_command(job.root, processes, resume)
    log_path = job.root / WORKER_LOG
    _log.info("training job %s in %d processes: %s", run.job_id, processes, " ".join(command))
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - this Python, fixed arguments
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            while process.poll() is None:
                forwarder.poll()
                time.sleep(_POLL_S)
            forwarder.poll()
        except BaseException:
            _stop(process)
            raise
    if process.returncode != 0 or not result.is_file():
        raise BackendError(
            f"the {processes} training processes of job {run.job_id} failed (torchrun exit "
            f"{process.returncode}); the end of {log_path}:\n{_tail(log_path)}"
        )
    return JobStatus.model_validate_json(result.read_text(encoding="utf-8"))
