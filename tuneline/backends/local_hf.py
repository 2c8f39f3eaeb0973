"""The local tuning backend: transformers + PEFT, LoRA, QLoRA or full fine-tuning, in this process.

A job is identified by ``spec.identity`` (dataset version, base model, training config) and lives
in ``<settings.home>/jobs/<identity>/``; its checkpoints and final model are mirrored to
``<spec.output_uri>/checkpoints/step-N/`` and ``<spec.output_uri>/model/``. ``submit`` of a spec
whose job exists re-attaches to it; ``wait`` runs (or resumes) the training in the calling
process and returns when it has finished.

**Resuming.** Every ``checkpoint_every_steps`` optimizer steps, and at the end, the trainable
weights, optimizer, scheduler, gradient scaler, RNG states, data position (epoch, group of
micro-batches) and early-stopping state are saved and uploaded (see
:mod:`tuneline.backends.checkpoints`). After a crash -- an exception or ``kill -9`` -- running
``wait`` again loads the newest checkpoint that verifies (falling back past incomplete or corrupt
ones, with a warning naming each) and continues from the exact data position. The data order of
each epoch is a permutation seeded by ``(seed, epoch)``, so it is the same after a restart.

Tolerance: on CPU in fp32 a resumed run repeats the uninterrupted run's arithmetic and ends with
the same final training and validation loss to within 1e-6 relative (bit-identical here). On
CUDA, kernels that are not deterministic (atomics in some backward passes) can make the last
digits differ; expect agreement within 1e-3 relative.

**Metrics** per optimizer step go to the ``MetricsSink`` given to ``wait`` and to
``metrics.jsonl`` in the job directory: ``train_loss`` (mean over the step's assistant tokens),
``learning_rate``, ``grad_norm`` (before clipping), ``tokens_per_second`` (real, non-padding
tokens), ``elapsed_s`` (training time across restarts) and, every ``eval_every_steps`` and at
the end, ``validation_loss``. After a resume, the steps past the checkpoint are emitted to the
sink again (their values repeat the killed attempt's); the tune stage's MLflow sink
(``BatchedMetricsLogger(skip_logged=True)``) drops the steps its run already has, so each step
appears once there.

**Early stopping**: after each validation, when the loss has not improved on the best so far by
more than ``early_stopping_threshold`` for ``early_stopping_patience`` validations in a row, the
run ends (completed, with a message); the final weights are those of that step.

**Cancelling**: ``cancel(job_id)`` leaves a marker the training loop checks every step; the run
checkpoints and stops (state ``stopped``). Submitting the spec again clears the marker, and
``wait`` resumes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, PreTrainedModel, get_scheduler

from tuneline.backends.base import (
    JobSpec,
    JobStatus,
    MetricPoint,
    MetricsSink,
    ProgressCallback,
    TuningBackend,
)
from tuneline.backends.checkpoints import MANIFEST, CheckpointStore, write_manifest
from tuneline.backends.hf_models import (
    MODEL_MANIFEST,
    load_causal_lm,
    load_tokenizer,
    model_config,
    peft_calls,
    resolve_model_dir,
    select_placement,
)
from tuneline.backends.sequences import (
    Batch,
    Example,
    OutputSplit,
    collate,
    encode_record,
    loss_sum,
    pack_examples,
    split_output_layer,
)
from tuneline.config import LocalTuneConfig
from tuneline.errors import BackendError, ConfigError, JobFailedError, TunelineError, ValidationFailedError
from tuneline.lineage import JobState, TrainedModel
from tuneline.records import ChatRecord, from_nova, from_openai
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore, S3Uri, local_path_or_none

__all__ = ["LocalBackend", "read_chat_jsonl"]

_log = logging.getLogger(__name__)
_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def read_chat_jsonl(text: str, source: str) -> list[ChatRecord]:
    """Chat records from JSONL in the Bedrock, Nova or OpenAI shape; errors name the line."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if "schemaVersion" in obj:
                records.append(from_nova(obj))
            elif any(m.get("role") == "system" for m in obj.get("messages", [])):
                records.append(from_openai(obj))
            else:
                records.append(ChatRecord.model_validate(obj))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{source} line {number} is not a chat record: {exc}") from exc
    return records


def _read_text(uri: str, store: ObjectStore) -> str:
    local = local_path_or_none(uri)
    return local.read_text(encoding="utf-8") if local is not None else store.get_bytes(uri).decode("utf-8")


# ------------------------------------------------------------------------------------------
# the job directory
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _JobDir:
    root: Path

    @property
    def status_file(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics_file(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def cancel_file(self) -> Path:
        return self.root / "CANCEL"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def read_status(self) -> JobStatus | None:
        if not self.status_file.is_file():
            return None
        return JobStatus.model_validate_json(self.status_file.read_text(encoding="utf-8"))

    def write_status(self, status: JobStatus) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.status_file.with_suffix(".tmp")
        tmp.write_text(status.model_dump_json(), encoding="utf-8")
        tmp.replace(self.status_file)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Only one process trains a job at a time; a second one is refused, not queued."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise BackendError(
                    f"local job {self.root.name} is being trained by another process; wait for it "
                    "or stop that process"
                ) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------
@dataclass
class _TrainerState:
    """Everything besides tensors that a resumed run needs, saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    group: int = 0  # next group of micro-batches within the epoch
    best_validation: float | None = None
    evals_without_gain: int = 0
    elapsed_s: float = 0.0
    tokens: int = 0
    train_seconds: float = 0.0
    last_train_loss: float | None = None
    last_validation_loss: float | None = None
    stopped_early: bool = False
    history: list[dict[str, float]] = field(default_factory=list)


class _Run:
    """One attempt at a job: loads everything, resumes from a checkpoint, trains to the end."""

    def __init__(
        self,
        spec: JobSpec,
        job: _JobDir,
        store: ObjectStore,
        settings: Settings,
        sink: MetricsSink | None,
        on_progress: ProgressCallback | None,
    ) -> None:
        assert isinstance(spec.tune, LocalTuneConfig)
        self.spec, self.cfg, self.job, self.store = spec, spec.tune, job, store
        self.sink, self.on_progress = sink, on_progress
        self.job_id = spec.identity
        self.base_dir = resolve_model_dir(self.cfg.base_model, store, settings.home / "cache" / "models")
        self.placement = select_placement(self.cfg.device, self.cfg.precision, self.cfg.adapter)
        self.tokenizer = load_tokenizer(self.base_dir, self.cfg.trust_remote_code)
        self.train = self._encode("train")
        self.validation = self._encode("validation") if "validation" in spec.dataset.split_uris else []
        self.groups_per_epoch = len(self._epoch_groups(0))
        if self.cfg.max_steps is not None:
            self.total_steps = self.cfg.max_steps
        else:
            self.total_steps = max(1, math.ceil(self.cfg.epochs * self.groups_per_epoch))
        self.checkpoints = CheckpointStore(job.checkpoints, _output(spec, "checkpoints"), store)
        self._reset()

    # --- setup ----------------------------------------------------------------------------
    def _reset(self) -> None:
        """A fresh model, optimizer, scheduler and state, as at step 0."""
        self.model = self._build_model()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.dim() >= 2]
        no_decay = [p for p in self.params if p.dim() < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.cfg.learning_rate,
            # One kernel for all parameters instead of a dozen small ops each: ~5% of a small
            # model's step on CPU. Same update rule; CPU and CUDA both have it.
            fused=True,
        )
        self.scheduler = get_scheduler(
            _SCHEDULERS[self.cfg.lr_scheduler],
            self.optimizer,
            num_warmup_steps=math.ceil(self.cfg.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.scaler = torch.amp.GradScaler(
            self.placement.device.type, enabled=self.placement.autocast_dtype == torch.float16
        )
        self.state = _TrainerState()
        self._status_written = float("-inf")
        self._split = self._split_output_layer()

    def _build_model(self) -> PreTrainedModel:
        torch.manual_seed(self.cfg.seed)
        random.seed(self.cfg.seed)
        model = load_causal_lm(self.base_dir, self.placement, self.cfg.trust_remote_code)
        model.config.use_cache = False
        if self.cfg.adapter in ("lora", "qlora"):
            with peft_calls():
                model = self._wrap_lora(model)
        model.train()
        return model

    def _wrap_lora(self, model: PreTrainedModel) -> PreTrainedModel:
        lora = self.cfg.lora
        config = PeftLoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        return get_peft_model(model, config)

    def _encode(self, split: str) -> list[Example]:
        uri = self.spec.dataset.split_uris[split]
        records = read_chat_jsonl(_read_text(uri, self.store), uri)
        examples = [encode_record(r, self.tokenizer, self.cfg.max_seq_length) for r in records]
        cut = sum(e.truncated for e in examples)
        if cut:
            _log.warning(
                "%d of %d %s examples are longer than max_seq_length=%d tokens and were cut",
                cut,
                len(examples),
                split,
                self.cfg.max_seq_length,
            )
        kept = [e for e in examples if e.target_tokens > 0]
        if len(kept) < len(examples):
            _log.warning(
                "%d %s examples have no assistant tokens left and are skipped",
                len(examples) - len(kept),
                split,
            )
        if split == "train" and not kept:
            raise BackendError(f"the train split {uri} has no example with assistant tokens to learn from")
        return kept

    # --- data plan --------------------------------------------------------------------------
    def _rows(self, examples: list[Example], order: list[int]) -> list[list[Example]]:
        if not self.cfg.packing:
            return [[examples[i]] for i in order]
        packed = pack_examples([len(examples[i]) for i in order], self.cfg.max_seq_length)
        return [[examples[order[i]] for i in row] for row in packed]

    def _epoch_groups(self, epoch: int) -> list[list[list[list[Example]]]]:
        """The epoch's optimizer steps: groups of micro-batches of rows of examples."""
        generator = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(self.train), generator=generator).tolist()
        rows = self._rows(self.train, order)
        size = self.cfg.batch_size
        micro = [rows[i : i + size] for i in range(0, len(rows), size)]
        accum = self.cfg.gradient_accumulation_steps
        return [micro[i : i + accum] for i in range(0, len(micro), accum)]

    # --- checkpoints ------------------------------------------------------------------------
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        return {
            n: p.detach().to("cpu").contiguous().clone()
            for n, p in self.model.named_parameters()
            if p.requires_grad
        }

    def _save_checkpoint(self) -> None:
        staging = self.checkpoints.staging_dir(self.state.step)
        save_file(self._trainable_state(), str(staging / "weights.safetensors"))
        torch.save(self.optimizer.state_dict(), staging / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), staging / "scheduler.pt")
        torch.save(self.scaler.state_dict(), staging / "scaler.pt")
        rng: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(rng, staging / "rng.pt")
        (staging / "trainer_state.json").write_text(json.dumps(self.state.__dict__), encoding="utf-8")
        uri = self.checkpoints.commit(staging, self.state.step)
        _log.info("checkpoint step-%d saved to %s", self.state.step, uri)

    def _load_checkpoint(self, directory: Path) -> None:
        weights = load_file(str(directory / "weights.safetensors"), device=str(self.placement.device))
        missing = {n for n, p in self.model.named_parameters() if p.requires_grad} - set(weights)
        if missing:
            raise BackendError(
                f"checkpoint {directory} lacks {len(missing)} trainable tensors, e.g. {sorted(missing)[0]}"
            )
        self.model.load_state_dict(weights, strict=False)
        device = self.placement.device
        self.optimizer.load_state_dict(
            torch.load(directory / "optimizer.pt", map_location=device, weights_only=True)
        )
        self.scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=True))
        self.scaler.load_state_dict(torch.load(directory / "scaler.pt", weights_only=True))
        rng = torch.load(directory / "rng.pt", weights_only=True)
        random.setstate(rng["python"])
        torch.set_rng_state(rng["torch"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.state = _TrainerState(
            **json.loads((directory / "trainer_state.json").read_text(encoding="utf-8"))
        )

    def _resume(self) -> None:
        for step, directory in self.checkpoints.candidates():
            try:
                self._load_checkpoint(directory)
            except (OSError, RuntimeError, ValueError, KeyError, TunelineError) as exc:
                _log.warning(
                    "checkpoint step-%d at %s could not be loaded (%s); falling back to an earlier one",
                    step,
                    directory,
                    exc,
                )
                # A half-loaded checkpoint leaves the model and optimizer in an unknown state.
                self._reset()
                continue
            _log.info("resuming job %s from checkpoint step-%d", self.job_id, step)
            self._truncate_metrics(step)
            return
        self._truncate_metrics(0)

    def _truncate_metrics(self, step: int) -> None:
        if not self.job.metrics_file.is_file():
            return
        kept = [
            line
            for line in self.job.metrics_file.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["step"] <= step
        ]
        self.job.metrics_file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    # --- the loop ---------------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        dtype = self.placement.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.placement.device.type, dtype=dtype)

    def _split_output_layer(self) -> OutputSplit | None:
        probe = self._device_batch([[e] for e in self.train[:2]])
        self.model.eval()
        with self._autocast():
            split = split_output_layer(self.model, probe)
        self.model.train()
        if split is None:
            _log.info("the base model's logits are not its output layer's alone; the loss uses full logits")
        return split

    def _loss_sum(self, batch: Batch) -> torch.Tensor:
        """Summed cross-entropy over the batch's labelled tokens (the caller divides)."""
        with self._autocast():
            return loss_sum(self.model, batch, self._split)

    def _device_batch(self, rows: list[list[Example]]) -> Batch:
        mask_dtype = self.placement.autocast_dtype or torch.float32
        return collate(rows, self.tokenizer.pad_token_id).to(self.placement.device, mask_dtype)

    def _validation_loss(self) -> float:
        self.model.eval()
        total = 0.0
        targets = 0
        rows = self._rows(self.validation, list(range(len(self.validation))))
        with torch.no_grad():
            for i in range(0, len(rows), self.cfg.batch_size):
                batch = self._device_batch(rows[i : i + self.cfg.batch_size])
                total += float(self._loss_sum(batch))
                targets += batch.target_tokens
        self.model.train()
        return total / max(targets, 1)

    def _train_step(self, group: list[list[list[Example]]]) -> dict[str, float]:
        started = time.perf_counter()
        batches = [self._device_batch(rows) for rows in group]
        targets = sum(b.target_tokens for b in batches)
        self.optimizer.zero_grad(set_to_none=True)
        loss_total = 0.0
        for batch in batches:
            loss = self._loss_sum(batch) / targets
            self.scaler.scale(loss).backward()
            loss_total += float(loss.detach())
        self.scaler.unscale_(self.optimizer)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm))
        learning_rate = self.scheduler.get_last_lr()[0]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        seconds = time.perf_counter() - started
        tokens = sum(b.tokens for b in batches)
        self.state.tokens += tokens
        self.state.train_seconds += seconds
        return {
            "train_loss": loss_total,
            "learning_rate": learning_rate,
            "grad_norm": grad_norm,
            "tokens_per_second": tokens / seconds if seconds > 0 else 0.0,
        }

    def _emit(self, metrics: dict[str, float]) -> None:
        step = self.state.step
        with self.job.metrics_file.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.sink is not None:
            self.sink.log_metrics(metrics, step)

    def _status(self, state: JobState, message: str = "") -> JobStatus:
        return JobStatus(
            job_id=self.job_id,
            state=state,
            message=message,
            steps=self.state.step,
            final_train_loss=self.state.last_train_loss,
            final_validation_loss=self.state.last_validation_loss,
        )

    def _progress(self, status: JobStatus, every_s: float = 0.0) -> None:
        # The status file is for other processes (status(), a re-run): once a second is plenty,
        # and a file write per step would be a measurable share of a tiny model's step time.
        now = time.monotonic()
        if now - self._status_written >= every_s:
            self.job.write_status(status)
            self._status_written = now
        if self.on_progress is not None:
            self.on_progress(status)

    def _should_stop_early(self, loss: float) -> bool:
        best = self.state.best_validation
        if best is None or loss < best - self.cfg.early_stopping_threshold:
            self.state.best_validation = loss
            self.state.evals_without_gain = 0
            return False
        self.state.evals_without_gain += 1
        patience = self.cfg.early_stopping_patience
        return patience is not None and self.state.evals_without_gain >= patience

    def run(self) -> JobStatus:
        self._resume()
        resumed_at = self.state.step
        self._progress(self._status(JobState.RUNNING, f"step {resumed_at}/{self.total_steps}"))
        clock = time.perf_counter() - self.state.elapsed_s
        epoch_groups = self._epoch_groups(self.state.epoch)
        while self.state.step < self.total_steps and not self.state.stopped_early:
            if self.job.cancel_file.exists():
                self._save_checkpoint()
                status = self._status(JobState.STOPPED, f"cancelled at step {self.state.step}")
                self._progress(status)
                return status
            if self.state.group >= len(epoch_groups):
                self.state.epoch += 1
                self.state.group = 0
                epoch_groups = self._epoch_groups(self.state.epoch)
            metrics = self._train_step(epoch_groups[self.state.group])
            self.state.group += 1
            self.state.step += 1
            self.state.last_train_loss = metrics["train_loss"]
            last = self.state.step >= self.total_steps
            if self.validation and (self.state.step % self.cfg.eval_every_steps == 0 or last):
                loss = self._validation_loss()
                metrics["validation_loss"] = loss
                self.state.last_validation_loss = loss
                self.state.stopped_early = self._should_stop_early(loss)
            self.state.elapsed_s = time.perf_counter() - clock
            metrics["elapsed_s"] = self.state.elapsed_s
            self._emit(metrics)
            if self.state.step % self.cfg.checkpoint_every_steps == 0 or last or self.state.stopped_early:
                self._save_checkpoint()
            self._progress(
                self._status(JobState.RUNNING, f"step {self.state.step}/{self.total_steps}"), every_s=1.0
            )
        self._export()
        message = (
            f"stopped early at step {self.state.step}: validation loss stopped improving"
            if self.state.stopped_early
            else ""
        )
        return self._status(JobState.COMPLETED, message)

    # --- the result -------------------------------------------------------------------------
    def _export(self) -> None:
        """Save the final adapter (or full weights) and tokenizer, and upload them."""
        target = self.job.model_dir
        shutil.rmtree(target, ignore_errors=True)
        self.model.save_pretrained(target)
        self.tokenizer.save_pretrained(target)
        summary = {
            "job_id": self.job_id,
            "method": self.cfg.method,
            "adapter": self.cfg.adapter,
            "base_model": self.cfg.base_model,
            "steps": self.state.step,
            "final_train_loss": self.state.last_train_loss,
            "final_validation_loss": self.state.last_validation_loss,
            "tokens_per_second": self.state.tokens / self.state.train_seconds
            if self.state.train_seconds
            else None,
            "train_seconds": self.state.train_seconds,
            "tokens": self.state.tokens,
        }
        (target / MODEL_MANIFEST).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if self.cfg.adapter == "lora" and self.cfg.merge_adapter:
            merged = self.job.root / "merged"
            shutil.rmtree(merged, ignore_errors=True)
            assert isinstance(self.model, PeftModel)
            self.model.merge_and_unload().save_pretrained(merged)
            self.tokenizer.save_pretrained(merged)
            _upload_sealed(self.store, _output(self.spec, "merged"), merged)
        _upload_sealed(self.store, _output(self.spec, "model"), target)


def _output(spec: JobSpec, *parts: str) -> str:
    return str(S3Uri.parse(spec.output_uri.rstrip("/") + "/").join(*parts)) + "/"


def _upload_sealed(store: ObjectStore, prefix: str, directory: Path) -> None:
    """Upload a directory with ``manifest.json`` last, so a prefix with a manifest is complete."""
    write_manifest(directory, step=0)
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST):
        store.put_file(prefix + path.relative_to(directory).as_posix(), path)
    store.put_file(prefix + MANIFEST, directory / MANIFEST)


# ------------------------------------------------------------------------------------------
# the backend
# ------------------------------------------------------------------------------------------
class LocalBackend(TuningBackend):
    """Tune Hugging Face causal LMs in this process (CUDA when present, else CPU)."""

    name = "local"

    def __init__(self, settings: Settings, store: ObjectStore) -> None:
        self.settings = settings
        self.store = store

    def _job(self, job_id: str) -> _JobDir:
        return _JobDir(self.settings.home / "jobs" / job_id)

    # --- validation -------------------------------------------------------------------------
    def validate(self, spec: JobSpec) -> None:
        cfg = spec.tune
        if not isinstance(cfg, LocalTuneConfig):
            raise ValidationFailedError(
                [f"tune.backend is {cfg.backend!r}; the local backend runs only 'local' jobs"]
            )
        problems: list[str] = []
        if cfg.method != "sft":
            problems.append(f"tune.method {cfg.method!r} runs on the TRL engine; this engine trains 'sft' only")
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
        status = JobStatus(job_id=job_id, state=JobState.PENDING, message="submitted")
        job.write_status(status)
        self._publish_status(spec, status)
        return job_id

    def _remote_status(self, spec: JobSpec) -> JobStatus | None:
        uri = _output(spec) + "status.json"
        if not self.store.exists(uri):
            return None
        return JobStatus.model_validate_json(self.store.get_bytes(uri))

    def _publish_status(self, spec: JobSpec, status: JobStatus) -> None:
        self.store.put_bytes(
            _output(spec) + "status.json", status.model_dump_json().encode(), "application/json"
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
            and self.store.exists(_output(spec, "model") + MANIFEST)
        ):
            return current
        with job.lock():
            try:
                status = _Run(spec, job, self.store, self.settings, sink, on_progress).run()
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
        prefix = _output(spec, "model")
        if not self.store.exists(prefix + MANIFEST):
            local = self._job(job_id).model_dir
            if not (local / MODEL_MANIFEST).is_file():
                raise JobFailedError(
                    f"local job {job_id} completed but its model is neither in {prefix} nor in {local}"
                )
            _upload_sealed(self.store, prefix, local)
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
