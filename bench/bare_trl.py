"""Bare TRL: the baselines ``bench/tune.py`` measures Tuneline's local provider against.

Each function trains the given model directory with TRL's own trainer as a user would write it
from TRL's documentation -- a ``datasets.Dataset`` of conversational rows, the trainer's config,
``trainer.train()`` -- and nothing of Tuneline's but the graders GRPO's reward calls (the same
reward on both sides, so both score the same thing). The settings that change speed but not what
is learned are the ones Tuneline uses: activation checkpointing off (TRL turns it on by default,
trading ~20% speed for memory), no checkpoints, one log per step, and the same precision: TRL's
configs default to bf16 autocast wherever the device has it, CPUs with AVX512-BF16 included,
while Tuneline's ``precision: auto`` is fp32 on CPU, so ``bf16`` is passed explicitly both ways.

Each run is timed by a callback from the Trainer's ``on_train_begin`` to the last ``on_step_end``:
the window Tuneline's own ``elapsed_s`` covers, so model loading, tokenization and the final save
are outside both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from transformers.trainer_callback import PrinterCallback

from tuneline.graders import GradeRecord, build_graders

__all__ = ["dpo", "grpo", "sft"]


class _Window(TrainerCallback):
    """Wall time from the start of training to the last optimizer step, and the tokens seen."""

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.started = self.ended = time.perf_counter()

    def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.ended = time.perf_counter()

    def result(self, state: Any) -> dict[str, float]:
        seconds = self.ended - self.started
        return {
            "seconds": seconds,
            "steps": state.global_step,
            "steps_per_second": state.global_step / seconds,
            "useful_tokens": state.num_input_tokens_seen,
            "tokens_per_second": state.num_input_tokens_seen / seconds,
        }


def _common(out: Path, batch_size: int, lr: float, seed: int, bf16: bool) -> dict[str, Any]:
    return {
        "bf16": bf16,
        "output_dir": str(out),
        "per_device_train_batch_size": batch_size,
        "learning_rate": lr,
        "lr_scheduler_type": "constant",
        "seed": seed,
        "data_seed": seed,
        "logging_steps": 1,
        "report_to": "none",
        "disable_tqdm": True,
        "save_strategy": "no",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "activation_checkpointing": False,
        "include_num_input_tokens_seen": "non_padding",
    }


def _train(trainer_class: Any, config: Any, model_dir: Path, rows: list[dict[str, Any]], **kwargs: Any) -> dict[str, float]:
    from datasets import Dataset

    window = _Window()
    trainer = trainer_class(
        model=AutoModelForCausalLM.from_pretrained(model_dir),
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(model_dir),
        callbacks=[window],
        **kwargs,
    )
    # Tuneline drops it too: it prints every step's logs (here, to the bench's one-line stdout).
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    return {**window.result(trainer.state), "final_train_loss": trainer.state.log_history[-2].get("loss")}


def sft(
    model_dir: Path, lines: list[str], out: Path, *, batch_size: int, lr: float, max_length: int,
    packing: bool, seed: int = 0, bf16: bool = False,
) -> dict[str, float]:
    """One epoch of ``SFTTrainer`` on chat lines (``system`` + user/assistant ``messages``), as
    prompt-completion rows: the loss falls on the answer only, as Tuneline's assistant-only loss."""
    from trl import SFTConfig, SFTTrainer

    rows = []
    for line in lines:
        record = json.loads(line)
        *prompt, answer = [{"role": "system", "content": record["system"]}, *record["messages"]]
        rows.append({"prompt": prompt, "completion": [answer]})
    config = SFTConfig(
        **_common(out, batch_size, lr, seed, bf16), num_train_epochs=1, max_length=max_length,
        packing=packing, packing_strategy="bfd",
    )
    return _train(SFTTrainer, config, model_dir, rows)


def dpo(
    model_dir: Path, lines: list[str], out: Path, *, batch_size: int, lr: float, max_length: int,
    steps: int, beta: float, seed: int = 0, bf16: bool = False,
) -> dict[str, float]:
    """``steps`` of ``DPOTrainer`` on preference lines (``system``, ``prompt``, ``chosen``, ``rejected``)."""
    from trl import DPOConfig, DPOTrainer

    rows = [
        {
            "prompt": [{"role": "system", "content": r["system"]}, {"role": "user", "content": r["prompt"]}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in map(json.loads, lines)
    ]
    config = DPOConfig(**_common(out, batch_size, lr, seed, bf16), max_steps=steps, max_length=max_length, beta=beta)
    return _train(DPOTrainer, config, model_dir, rows)


def grpo(
    model_dir: Path, lines: list[str], out: Path, *, batch_size: int, lr: float, steps: int,
    num_generations: int, max_completion_length: int, rewards: list[dict[str, Any]], seed: int = 0,
    bf16: bool = False,
) -> dict[str, float]:
    """``steps`` of ``GRPOTrainer`` on RFT lines (``messages`` + ``reference_answer``), rewarded by
    the graders ``rewards`` names; ``batch_size`` counts completions, as in TRL."""
    from trl import GRPOConfig, GRPOTrainer

    graders = build_graders(rewards)

    def reward(prompts: list[Any], completions: list[Any], reference: list[str], **_: Any) -> list[float]:
        return [
            graders.grade(completion[0]["content"], GradeRecord(reference=json.loads(answer))).score
            for completion, answer in zip(completions, reference, strict=True)
        ]

    rows = [
        {"prompt": r["messages"], "reference": json.dumps(r["reference_answer"])} for r in map(json.loads, lines)
    ]
    config = GRPOConfig(
        **_common(out, batch_size, lr, seed, bf16), max_steps=steps, num_generations=num_generations,
        max_completion_length=max_completion_length, temperature=1.0, beta=0.0, remove_unused_columns=False,
    )
    return _train(GRPOTrainer, config, model_dir, rows, reward_funcs=[reward])
