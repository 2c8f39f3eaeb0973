"""The local tuning backend: Hugging Face TRL (SFT, DPO, KTO, GRPO) with LoRA, QLoRA or full
fine-tuning, in this process -- or, with ``tune.distributed``, in several processes that torchrun
starts (:mod:`tuneline.backends.local.distributed`).

A job is identified by ``spec.identity`` (dataset version, base model, training config) and lives
in ``<settings.home>/jobs/<identity>/`` (:mod:`tuneline.backends.local.job`); its checkpoints and
final model are mirrored to ``<spec.output_uri>/checkpoints/step-N/`` and ``<spec.output_uri>/model/``.
``submit`` of a spec whose job exists re-attaches to it; ``wait`` runs (or resumes) the training in
the calling process (:class:`tuneline.backends.local.recipe.TrainingRun`) and returns when it has
finished.

**Resuming.** Every ``checkpoint_every_steps`` optimizer steps, and at the end, the Trainer's
checkpoint (trainable weights as safetensors, optimizer, scheduler, RNG states, its data position)
plus Tuneline's run state (early-stopping counters, elapsed time, last losses) is sealed with a
manifest of checksums and uploaded. After a crash -- an exception or ``kill -9`` -- running ``wait``
again resumes from the newest checkpoint that verifies (falling back past incomplete or corrupt
ones, with a warning naming each); the Trainer skips the batches already trained.

**Metrics** per optimizer step go to the ``MetricsSink`` given to ``wait`` and to ``metrics.jsonl``:
``train_loss``, ``learning_rate``, ``grad_norm``, ``tokens_per_second`` (SFT), ``elapsed_s``, the
method's own (DPO ``rewards/margins``, GRPO ``reward``, ...) and, every ``eval_every_steps`` and at
the end, ``validation_loss``. After a resume the steps past the checkpoint are emitted again; the
tune stage's sink (``BatchedMetricsLogger(skip_logged=True)``) logs each step once.

**Early stopping** and **cancelling** (``cancel(job_id)`` leaves a marker checked every step: the
run checkpoints and stops, state ``stopped``; submitting again resumes) are Trainer callbacks
(:mod:`tuneline.backends.local.callbacks`).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM

from tuneline.backends.base import (
    JobSpec,
    JobStatus,
    MetricPoint,
    MetricsSink,
    ProgressCallback,
    TuningBackend,
)
from tuneline.backends.local.checkpoints import MANIFEST
from tuneline.backends.local.distributed import distributed_problems, resolve_processes, train_in_processes
from tuneline.backends.local.gpu import gpu_feature_problems
from tuneline.backends.local.hf_models import MODEL_MANIFEST, model_config, select_placement
from tuneline.backends.local.job import JobDir, output_uri, upload_sealed
from tuneline.backends.local.recipe import TrainingRun
from tuneline.config import LocalTuneConfig
from tuneline.errors import BackendError, ConfigError, JobFailedError, TunelineError, ValidationFailedError
from tuneline.lineage import JobState, TrainedModel
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore, local_path_or_none

__all__ = ["LocalBackend"]

_log = logging.getLogger(__name__)


class LocalBackend(TuningBackend):
    """Tune Hugging Face causal LMs with TRL in this process (CUDA when present, else CPU)."""

    name = "local"

    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store

    def _job(self, job_id: str) -> JobDir:
        return JobDir(self.settings.home / "jobs" / job_id)

    # --- validation -------------------------------------------------------------------------
    def validate(self, spec: JobSpec) -> None:
        cfg = spec.tune
        if not isinstance(cfg, LocalTuneConfig):
            raise ValidationFailedError(
                [f"tune.backend is {cfg.backend!r}; the local backend runs only 'local' jobs"]
            )
        problems: list[str] = []
        if cfg.method == "grpo" and "validation" in spec.dataset.split_uris and cfg.early_stopping_patience is not None:
            problems.append("tune.early_stopping_patience does not apply to method 'grpo' (it has no validation loss)")
        problems.extend(gpu_feature_problems(cfg))
        problems.extend(distributed_problems(cfg))
        try:
            select_placement(cfg.device, cfg.precision, cfg.adapter)
        except ConfigError as exc:
            problems.append(str(exc))
        if "train" not in spec.dataset.split_uris:
            problems.append(f"dataset {spec.dataset.name}@{spec.dataset.version} has no train split")
        if cfg.early_stopping_patience is not None and "validation" not in spec.dataset.split_uris:
            problems.append("tune.early_stopping_patience needs a validation split; the dataset has none")
        try:
            config = self._base_config(cfg)
        except (TunelineError, OSError, ValueError) as exc:
            problems.append(f"tune.base_model {cfg.base_model!r} cannot be read: {exc}")
        else:
            limit = getattr(config, "max_position_embeddings", None)
            if limit is not None and cfg.max_seq_length > limit:
                problems.append(
                    f"tune.max_seq_length={cfg.max_seq_length} exceeds the base model's "
                    f"max_position_embeddings={limit}"
                )
            if cfg.adapter in ("lora", "qlora") and cfg.lora.target_modules != "all-linear":
                with torch.device("meta"):
                    skeleton = AutoModelForCausalLM.from_config(
                        config, trust_remote_code=cfg.trust_remote_code
                    )
                names = {name.rsplit(".", 1)[-1] for name, _ in skeleton.named_modules()}
                unknown = [m for m in cfg.lora.target_modules if m not in names]
                if unknown:
                    linear = sorted(
                        {
                            n.rsplit(".", 1)[-1]
                            for n, m in skeleton.named_modules()
                            if isinstance(m, torch.nn.Linear)
                        }
                    )
                    problems.append(
                        f"tune.lora.target_modules {unknown} are not modules of the base model; its linear layers are {linear}"
                    )
        if problems:
            raise ValidationFailedError(problems)

    def _base_config(self, cfg: LocalTuneConfig) -> Any:
        local = local_path_or_none(cfg.base_model)
        if local is not None:
            if not (local / "config.json").is_file():
                raise ConfigError(f"{local} has no config.json")
            return model_config(local, cfg.trust_remote_code)
        with tempfile.TemporaryDirectory() as tmp:
            self.store.download_file(cfg.base_model.rstrip("/") + "/config.json", Path(tmp) / "config.json")
            return model_config(Path(tmp), cfg.trust_remote_code)

    # --- life cycle -------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        job_id = spec.identity
        job = self._job(job_id)
        job.cancel_file.unlink(missing_ok=True)
        if job.read_status() is not None:
            _log.info("re-attaching to local job %s", job_id)
            return job_id
        remote = self._remote_status(spec)
        if remote is not None:
            _log.info("re-attaching to local job %s (state from %s)", job_id, spec.output_uri)
            job.write_status(remote)
            return job_id
        job.root.mkdir(parents=True, exist_ok=True)
        (job.root / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
        # Next to the status: what a multi-node TrainJob's workers read (worker --spec).
        self.store.put_bytes(output_uri(spec) + "spec.json", spec.model_dump_json().encode(), "application/json")
        status = JobStatus(job_id=job_id, state=JobState.PENDING, message="submitted")
        job.write_status(status)
        self._publish_status(spec, status)
        return job_id

    def _remote_status(self, spec: JobSpec) -> JobStatus | None:
        uri = output_uri(spec) + "status.json"
        if not self.store.exists(uri):
            return None
        return JobStatus.model_validate_json(self.store.get_bytes(uri))

    def _publish_status(self, spec: JobSpec, status: JobStatus) -> None:
        self.store.put_bytes(
            output_uri(spec) + "status.json", status.model_dump_json().encode(), "application/json"
        )

    def status(self, job_id: str) -> JobStatus:
        status = self._job(job_id).read_status()
        if status is None:
            raise BackendError(
                f"no local job {job_id} under {self.settings.home / 'jobs'}; submit its spec first"
            )
        return status

    def wait(
        self,
        spec: JobSpec,
        job_id: str,
        sink: MetricsSink | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> JobStatus:
        job = self._job(job_id)
        current = job.read_status() or self._remote_status(spec)
        if (
            current is not None
            and current.state == JobState.COMPLETED
            and self.store.exists(output_uri(spec, "model") + MANIFEST)
        ):
            return current
        with job.lock():
            try:
                run = TrainingRun(spec, job, self.store, self.settings, sink, on_progress)
                processes = resolve_processes(spec.tune)
                status = train_in_processes(run, processes) if processes > 1 else run.train()
            except Exception as exc:
                failed = (job.read_status() or JobStatus(job_id=job_id, state=JobState.FAILED)).model_copy(
                    update={"state": JobState.FAILED, "message": f"{type(exc).__name__}: {exc}"}
                )
                job.write_status(failed)
                self._publish_status(spec, failed)
                if on_progress is not None:
                    on_progress(failed)
                raise JobFailedError(
                    f"local job {job_id} failed at step {failed.steps}: {failed.message}"
                ) from exc
        job.write_status(status)
        self._publish_status(spec, status)
        if on_progress is not None:
            on_progress(status)
        return status

    def metrics(self, job_id: str) -> list[MetricPoint]:
        path = self._job(job_id).metrics_file
        if not path.is_file():
            return []
        points = []
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            step = row.pop("step")
            points.extend(MetricPoint(step=step, name=name, value=value) for name, value in row.items())
        return points

    def fetch_model(self, spec: JobSpec, job_id: str) -> TrainedModel:
        status = self._job(job_id).read_status() or self._remote_status(spec)
        if status is None or status.state != JobState.COMPLETED:
            state = status.state.value if status else "unknown"
            message = f": {status.message}" if status and status.message else ""
            raise JobFailedError(f"local job {job_id} has not completed (state {state}{message})")
        prefix = output_uri(spec, "model")
        if not self.store.exists(prefix + MANIFEST):
            local = self._job(job_id).model_dir
            if not (local / MODEL_MANIFEST).is_file():
                raise JobFailedError(
                    f"local job {job_id} completed but its model is neither in {prefix} nor in {local}"
                )
            upload_sealed(self.store, prefix, local)
        summary = json.loads(self.store.get_bytes(prefix + MODEL_MANIFEST))
        return TrainedModel(
            backend=self.name,
            job_id=job_id,
            base_model=spec.tune.base_model,
            model_uri=prefix,
            final_train_loss=summary["final_train_loss"],
            final_validation_loss=summary["final_validation_loss"],
            steps=summary["steps"],
            tokens_per_second=summary["tokens_per_second"],
        )

    def cancel(self, job_id: str) -> None:
        job = self._job(job_id)
        if job.read_status() is None:
            raise BackendError(f"no local job {job_id} to cancel")
        job.cancel_file.touch()
