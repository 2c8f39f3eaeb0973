"""One attempt at a local job on Hugging Face TRL, in named phases (the torchtune recipe shape):

1. ``setup``: placement (device, precision, adapter), tokenizer, the split's records as the
   dataset the method's trainer takes (:mod:`tuneline.backends.local.data`), the model (LoRA /
   QLoRA adapters or every weight), and the TRL trainer with Tuneline's callbacks.
2. ``load_checkpoint``: the newest checkpoint that verifies (local, else its S3 mirror), its run
   state, and ``metrics.jsonl`` cut back to it.
3. ``train``: ``trainer.train(resume_from_checkpoint=...)``; checkpoints are saved by the
   Trainer and sealed + mirrored by :class:`~tuneline.backends.local.callbacks.CheckpointMirror`.
   A checkpoint that ended the training (the last step, or early stopping) is loaded and goes
   straight to ``cleanup``: no step is trained again.
4. ``cleanup``: export the final adapter (or full weights) and tokenizer as safetensors with
   Tuneline's manifest, merge the adapter when asked, upload.

Under ``tune.distributed`` the same recipe runs in every process torchrun starts
(:mod:`tuneline.backends.local.distributed`): each takes ``batch_size / processes`` sequences per
step, every rank resumes from the same checkpoint, and only rank 0 writes metrics, checkpoints and
the model.

The trainer is TRL's ``SFTTrainer``, ``DPOTrainer``, ``KTOTrainer`` or ``GRPOTrainer`` for
``tune.method`` sft, dpo, kto, grpo. TRL's own reporting is off (``report_to="none"``): metrics
reach MLflow once per step through the tune stage's batched sink.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from transformers import PreTrainedModel

from tuneline.backends.base import JobSpec, JobStatus, MetricsSink, ProgressCallback
from tuneline.backends.local.callbacks import (
    CheckpointMirror,
    RunState,
    TrainingAlreadyEnded,
    TunelineCallback,
)
from tuneline.backends.local.checkpoints import CheckpointStore
from tuneline.backends.local.data import (
    check_no_typed_special_tokens,
    check_template_renders,
    pretrain_rows,
    read_records,
    read_text,
    sft_rows,
    trl_rows,
)
from tuneline.backends.local.hf_models import (
    MODEL_MANIFEST,
    load_causal_lm,
    load_tokenizer,
    peft_calls,
    resolve_model_dir,
    select_placement,
)
from tuneline.backends.local.job import JobDir, output_uri, upload_sealed
from tuneline.backends.local.ranks import SINGLE, Ranks
from tuneline.config import LocalTuneConfig
from tuneline.errors import BackendError
from tuneline.lineage import JobState
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

__all__ = ["AUTO", "TrainingRun"]

_log = logging.getLogger(__name__)
_SCHEDULERS = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
AUTO = "auto"  # train(resume=AUTO): the newest checkpoint that verifies, chosen by rank 0


class TrainingRun:
    def __init__(
        self,
        spec: JobSpec,
        job: JobDir,
        store: ObjectStore,
        settings: Settings,
        sink: MetricsSink | None,
        on_progress: ProgressCallback | None,
        ranks: Ranks = SINGLE,
    ) -> None:
        assert isinstance(spec.tune, LocalTuneConfig)
        self.spec, self.cfg, self.job, self.store, self.settings = spec, spec.tune, job, store, settings
        self.sink, self.on_progress = sink, on_progress
        self.ranks = ranks
        self.job_id = spec.identity
        self.run_state = RunState()
        self.checkpoints = CheckpointStore(job.checkpoints, output_uri(spec, "checkpoints"), store)

    # --- 1. setup -------------------------------------------------------------------------------
    def setup(self) -> None:
        cfg = self.cfg
        if cfg.batch_size % self.ranks.world_size:
            raise BackendError(
                f"tune.batch_size {cfg.batch_size} does not split evenly over {self.ranks.world_size} "
                f"processes: use a multiple of {self.ranks.world_size}"
            )
        self.placement = select_placement(cfg.device, cfg.precision, cfg.adapter)
        self.base_dir = resolve_model_dir(cfg.base_model, self.store, self.settings.home / "cache" / "models")
        self.tokenizer = load_tokenizer(self.base_dir, cfg.trust_remote_code)
        self.train_rows = self._rows("train")
        self.validation_rows = self._rows("validation") if "validation" in self.spec.dataset.split_uris else []
        if not self.train_rows:
            raise BackendError(
                f"the train split {self.spec.dataset.split_uris['train']} has no example to learn from"
            )
        self.model = self._build_model()
        self.callback = TunelineCallback(
            job=self.job,
            job_id=self.job_id,
            run=self.run_state,
            total_steps=lambda: self.trainer.state.max_steps,
            has_validation=self._evaluates(),
            early_stopping_patience=cfg.early_stopping_patience,
            early_stopping_threshold=cfg.early_stopping_threshold,
            sink=self.sink,
            on_progress=self.on_progress,
            ranks=self.ranks,
        )
        mirror = CheckpointMirror(self.checkpoints, self.run_state, before_seal=self.callback.flush, ranks=self.ranks)
        self.trainer = self._build_trainer([self.callback, mirror])
        # Metrics go to the sink and metrics.jsonl; the Trainer's own printing of each log is noise.
        from transformers.trainer_callback import PrinterCallback

        self.trainer.remove_callback(PrinterCallback)

    def _rows(self, split: str) -> list[dict[str, Any]]:
        uri = self.spec.dataset.split_uris[split]
        records = read_records(read_text(uri, self.store), uri, self.cfg.method)
        if self.cfg.method == "sft":
            return sft_rows(records, self.tokenizer, self.cfg.max_seq_length, split)
        if self.cfg.method == "pretrain":
            return pretrain_rows(records, self.tokenizer, self.cfg.max_seq_length)
        check_template_renders(records, self.tokenizer, uri)
        check_no_typed_special_tokens(records, self.tokenizer, uri, self.cfg.method)
        return trl_rows(self.cfg.method, records)

    def _build_model(self) -> PreTrainedModel:
        torch.manual_seed(self.cfg.seed)
        random.seed(self.cfg.seed)
        model = load_causal_lm(self.base_dir, self.placement, self.cfg.trust_remote_code, self.cfg.attention)
        model.config.use_cache = False
        if self.cfg.adapter in ("lora", "qlora"):
            lora = self.cfg.lora
            config = PeftLoraConfig(
                r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                target_modules=lora.target_modules, task_type="CAUSAL_LM",
            )
            with peft_calls():
                model = get_peft_model(model, config)
        return model

    def _common_args(self) -> dict[str, Any]:
        cfg = self.cfg
        half = self.placement.autocast_dtype
        has_validation = self._evaluates()
        per_process = cfg.batch_size // self.ranks.world_size
        return {
            "output_dir": str(self.job.trainer_dir),
            "per_device_train_batch_size": per_process,
            "per_device_eval_batch_size": per_process,
            "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
            "learning_rate": cfg.learning_rate,
            "lr_scheduler_type": _SCHEDULERS[cfg.lr_scheduler],
            "warmup_steps": cfg.warmup_ratio,  # below 1: a ratio of the total steps
            "weight_decay": cfg.weight_decay,
            "max_grad_norm": cfg.max_grad_norm,
            "num_train_epochs": cfg.epochs,
            "max_steps": cfg.max_steps if cfg.max_steps is not None else -1,
            "seed": cfg.seed,
            "data_seed": cfg.seed,
            "logging_steps": 1,
            "include_num_input_tokens_seen": "non_padding",
            "report_to": "none",
            "disable_tqdm": True,
            "save_strategy": "steps",
            "save_steps": cfg.checkpoint_every_steps,
            "save_total_limit": 1,
            "eval_strategy": "steps" if has_validation else "no",
            "eval_steps": cfg.eval_every_steps,
            "use_cpu": self.placement.device.type == "cpu",
            "bf16": half is torch.bfloat16,
            "fp16": half is torch.float16,
            "dataloader_num_workers": 0,
            # TRL turns it on by default (memory for ~20% speed); small local jobs do not need it.
            "activation_checkpointing": False,
            "remove_unused_columns": self.cfg.method != "grpo",
            "use_liger_kernel": cfg.liger_kernel,  # validate() refused it without CUDA and liger-kernel
            # LoRA's frozen weights need no gradient; every trainable one is used each step.
            "ddp_find_unused_parameters": False if self.ranks.distributed else None,
            **self._sharding_args(),
        }

    def _sharding_args(self) -> dict[str, Any]:
        """FSDP2 through the Trainer for strategy 'fsdp' (validate() refused it without CUDA GPUs)."""
        spread = self.cfg.distributed
        if spread is None or spread.strategy != "fsdp" or not self.ranks.distributed:
            return {}
        return {
            "fsdp": True,
            "fsdp_config": {
                "version": 2,
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "state_dict_type": "FULL_STATE_DICT",  # checkpoints and the model stay one safetensors file
            },
        }

    def _evaluates(self) -> bool:
        # GRPO has no validation loss: its progress is the reward, and evaluation scores the model.
        return bool(self.validation_rows) and self.cfg.method != "grpo"

    def _build_trainer(self, callbacks: list[Any]) -> Any:
        from datasets import Dataset

        cfg = self.cfg
        train = Dataset.from_list(self.train_rows)
        validation = Dataset.from_list(self.validation_rows) if self.validation_rows else None
        common = self._common_args()
        kwargs: dict[str, Any] = {
            "model": self.model,
            "train_dataset": train,
            "eval_dataset": validation,
            "processing_class": self.tokenizer,
            "callbacks": callbacks,
        }
        if cfg.method in ("sft", "pretrain"):  # both pre-tokenized rows with their labels
            from trl import SFTConfig, SFTTrainer

            # bfd packing is padding-free: position ids restart per example, and transformers
            # builds a block-diagonal causal mask from them, so no token attends across examples.
            args = SFTConfig(
                **common, max_length=cfg.max_seq_length, packing=cfg.packing, packing_strategy="bfd",
                eval_packing=cfg.packing,
            )
            return SFTTrainer(args=args, **kwargs)
        if cfg.method == "dpo":
            from trl import DPOConfig, DPOTrainer

            args = DPOConfig(**common, max_length=cfg.max_seq_length, beta=cfg.beta)
            return DPOTrainer(args=args, **kwargs)
        if cfg.method == "kto":
            from trl import KTOConfig, KTOTrainer

            args = KTOConfig(**common, max_length=cfg.max_seq_length, beta=cfg.beta)
            return KTOTrainer(args=args, **kwargs)
        if cfg.method == "grpo":
            from trl import GRPOConfig, GRPOTrainer

            from tuneline.backends.local.rewards import grader_reward

            args = GRPOConfig(
                **common,
                num_generations=cfg.num_generations,
                max_completion_length=cfg.max_completion_length,
                temperature=cfg.temperature,
                beta=0.0,
                # vLLM in this process, sharing the GPU with training (no separate `trl vllm-serve`)
                use_vllm=cfg.vllm,
                vllm_mode="colocate",
            )
            kwargs.pop("eval_dataset")
            return GRPOTrainer(args=args, reward_funcs=[grader_reward(cfg.rewards)], **kwargs)
        raise BackendError(f"tune.method {cfg.method!r} has no trainer")

    # --- 2. load_checkpoint -----------------------------------------------------------------------
    def agree_on_checkpoint(self) -> Path | None:
        """Rank 0 chooses the checkpoint (:meth:`load_checkpoint`); every rank resumes from it.

        Ranks on other machines (a multi-node run) fetch it from S3 once per machine.
        """
        chosen = self.load_checkpoint() if self.ranks.primary else None
        step = self.ranks.broadcast(_step_of(chosen))
        if self.ranks.primary or step is None:
            self.ranks.barrier()
            return chosen
        directory = self.checkpoints.local_root / f"step-{step}"
        if self.ranks.local_rank == 0:
            directory = self.checkpoints.fetch(step)
        self.ranks.barrier()
        self.adopt_checkpoint(directory)
        return directory

    def adopt_checkpoint(self, directory: Path | None) -> None:
        """Resume from ``directory`` (chosen by the launching process): its run state, no choice."""
        if directory is not None:
            self.run_state.__dict__.update(RunState.load(directory).__dict__)
            self.run_state.cancelled = False

    def load_checkpoint(self) -> Path | None:
        """The newest checkpoint that verifies, with its run state; metrics cut back to it."""
        for step, directory in self.checkpoints.candidates():
            restored = RunState.load(directory)
            self.run_state.__dict__.update(restored.__dict__)
            self.run_state.cancelled = False
            _log.info("resuming job %s from checkpoint step-%d", self.job_id, step)
            self._truncate_metrics(step)
            return directory
        self._truncate_metrics(0)
        return None

    def _truncate_metrics(self, step: int) -> None:
        if not self.job.metrics_file.is_file():
            return
        kept = [
            line
            for line in self.job.metrics_file.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["step"] <= step
        ]
        self.job.metrics_file.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    # --- 3. train -----------------------------------------------------------------------------
    def train(self, resume: Path | str | None = AUTO) -> JobStatus:
        """Train to the end; ``resume``: AUTO (choose here), a checkpoint directory, or None (start)."""
        self.setup()
        if resume == AUTO:
            resume = self.agree_on_checkpoint() if self.ranks.distributed else self.load_checkpoint()
        else:
            resume = Path(resume) if resume is not None else None
            self.adopt_checkpoint(resume)
        if self.ranks.primary:
            shutil.rmtree(self.job.trainer_dir, ignore_errors=True)  # only sealed checkpoints are trusted
        self.ranks.barrier()
        try:
            self.trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
        except TrainingAlreadyEnded as ended:  # every rank resumed from the same checkpoint: all raise
            _log.info("job %s: %s; exporting it without training again", self.job_id, ended)
        self.callback.flush()
        steps = self.trainer.state.global_step
        if self.run_state.cancelled:
            return self.callback.status(JobState.STOPPED, steps, f"cancelled at step {steps}")
        self.cleanup()
        message = (
            f"stopped early at step {steps}: validation loss stopped improving" if self.run_state.stopped_early else ""
        )
        return self.callback.status(JobState.COMPLETED, steps, message)

    # --- 4. cleanup ---------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Save the final adapter (or full weights) and tokenizer, and upload them (rank 0)."""
        target = self.job.model_dir
        model = self.trainer.model
        if self.ranks.primary:
            shutil.rmtree(target, ignore_errors=True)
        self.ranks.barrier()
        if self.trainer.is_fsdp_enabled:
            # The shards are gathered by every rank together; rank 0 writes the file.
            self.trainer.save_model(str(target))
        if not self.ranks.primary:
            return
        if not self.trainer.is_fsdp_enabled:
            model.save_pretrained(target)  # safetensors: transformers and PEFT write nothing else
        self.tokenizer.save_pretrained(target)
        run = self.run_state
        summary = {
            "job_id": self.job_id,
            "method": self.cfg.method,
            "adapter": self.cfg.adapter,
            "engine": "trl",
            "base_model": self.cfg.base_model,
            "steps": self.trainer.state.global_step,
            "final_train_loss": run.last_train_loss,
            "final_validation_loss": run.last_validation_loss,
            "tokens_per_second": run.tokens / run.train_seconds if run.train_seconds and run.tokens else None,
            "train_seconds": run.train_seconds,
            "tokens": run.tokens,
        }
        (target / MODEL_MANIFEST).write_text(json.dumps(summary, indent=2), encoding="utf-8")
        if self.cfg.adapter == "lora" and self.cfg.merge_adapter:
            merged = self.job.root / "merged"
            shutil.rmtree(merged, ignore_errors=True)
            assert isinstance(model, PeftModel)
            model.merge_and_unload().save_pretrained(merged)
            self.tokenizer.save_pretrained(merged)
            upload_sealed(self.store, output_uri(self.spec, "merged"), merged)
        upload_sealed(self.store, output_uri(self.spec, "model"), target)
        shutil.rmtree(self.job.trainer_dir, ignore_errors=True)


def _step_of(directory: Path | None) -> int | None:
    return None if directory is None else int(directory.name.removeprefix("step-"))


def total_steps_hint(cfg: LocalTuneConfig, examples: int) -> int:
    """Steps for a padded run of ``examples`` (progress estimates before the trainer exists)."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    per_epoch = math.ceil(examples / cfg.batch_size / cfg.gradient_accumulation_steps)
    return max(1, math.ceil(cfg.epochs * per_epoch))
