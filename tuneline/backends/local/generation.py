"""Greedy (or sampled) generation with a local Hugging Face model, for the evaluate stage.

``LocalGenerator`` loads a base model directory, a LoRA adapter directory on top of its base, or
a fully fine-tuned model directory (local paths or ``s3://`` prefixes), renders each prompt with
the tokenizer's chat template (:data:`~tuneline.backends.local.hf_models.DEFAULT_CHAT_TEMPLATE` when it
has none), and generates in batches: prompts are left-padded so that every row's next token
follows its own last prompt token, with the KV cache on.

Each :class:`~tuneline.backends.base.Generation` carries as ``latency_s`` the wall time of the
batch that produced it divided by the batch's size, and that size as ``batch_size``: per-example
latencies then add up to the time generation took. Stop sequences end a row's
generation as soon as they appear and are cut from the text, as is the end-of-sequence token.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from tuneline.backends.base import Generation
from tuneline.backends.local.chat_encoding import encode_chat
from tuneline.backends.local.hf_models import (
    chat_messages,
    chat_tools,
    load_causal_lm,
    load_tokenizer,
    peft_calls,
    read_model_manifest,
    resolve_model_dir,
    select_placement,
)
from tuneline.config import GenerationConfig
from tuneline.errors import ConfigError
from tuneline.records import ChatRecord
from tuneline.settings import Settings
from tuneline.storage.s3 import ObjectStore

__all__ = ["LocalGenerator", "encode_prompts"]


def encode_prompts(tokenizer: PreTrainedTokenizerBase, records: Sequence[ChatRecord]) -> dict[str, torch.Tensor]:
    """Each record's prompt turns rendered with the generation prompt, left-padded into one batch.

    Text in a prompt that equals one of the tokenizer's special tokens stays text, as in training
    (:mod:`tuneline.backends.local.chat_encoding`): a ticket cannot end its own turn."""
    rows = [
        encode_chat(
            tokenizer, chat_messages(r.prompt_messages, r.system), generation_prompt=True, where=f"prompt {i}",
            tools=chat_tools(r.tools),
        ).input_ids
        for i, r in enumerate(records)
    ]
    width = max(len(row) for row in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


class LocalGenerator:
    """A ``TextGenerator`` over a local model; ``close()`` frees its memory."""

    def __init__(
        self,
        model: str | Path,
        *,
        base_model: str | Path | None = None,
        label: str = "candidate",
        settings: Settings | None = None,
        store: ObjectStore | None = None,
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        """``model`` is a model directory or an adapter directory; an adapter's base is
        ``base_model``, else the ``base_model`` its Tuneline manifest records."""
        self.label = label
        cache = (settings.home if settings else Path(".tuneline")) / "cache" / "models"
        model_dir = resolve_model_dir(model, store, cache)
        placement = select_placement(device, "auto", "full")
        self._device = placement.device
        tokenizer_dir = model_dir
        if (model_dir / "adapter_config.json").is_file():
            base_source = base_model or read_model_manifest(model_dir).get("base_model")
            if base_source is None:
                raise ConfigError(
                    f"{model} is a LoRA adapter but no base model was given and its manifest names none"
                )
            base_dir = resolve_model_dir(base_source, store, cache)
            if not (model_dir / "tokenizer_config.json").is_file():
                tokenizer_dir = base_dir
            base = load_causal_lm(base_dir, placement, trust_remote_code)
            # Merged once at load: generation then runs at the plain model's speed.
            with peft_calls():
                loaded: PreTrainedModel = PeftModel.from_pretrained(base, model_dir).merge_and_unload()
        else:
            loaded = load_causal_lm(model_dir, placement, trust_remote_code)
        self._model: PreTrainedModel | None = loaded.eval()
        self._dtype = placement.autocast_dtype
        self._tokenizer = load_tokenizer(tokenizer_dir, trust_remote_code)
        self._tokenizer.padding_side = "left"

    def _encode_prompts(self, records: Sequence[ChatRecord]) -> dict[str, torch.Tensor]:
        return encode_prompts(self._tokenizer, records)

    def generate(self, prompts: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
        if self._model is None:
            raise ConfigError(f"generator {self.label!r} was closed")
        results: list[Generation] = []
        for start in range(0, len(prompts), config.batch_size):
            results.extend(self._generate_batch(prompts[start : start + config.batch_size], config))
        return results

    def _generate_batch(self, records: Sequence[ChatRecord], config: GenerationConfig) -> list[Generation]:
        assert self._model is not None
        tokenizer = self._tokenizer
        started = time.perf_counter()
        encoded = {k: v.to(self._device) for k, v in self._encode_prompts(records).items()}
        sampling = config.temperature > 0
        options: dict[str, object] = {
            "max_new_tokens": config.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "use_cache": True,
        }
        if sampling:
            options["temperature"] = config.temperature
        else:
            # The model's generation_config may ask for sampling defaults; greedy means none of them.
            options.update(temperature=None, top_p=None, top_k=None)
        if config.stop:
            options.update(stop_strings=list(config.stop), tokenizer=tokenizer)
        with torch.inference_mode():
            if self._dtype is not None:
                with torch.autocast(self._device.type, dtype=self._dtype):
                    output = self._model.generate(**encoded, **options)
            else:
                output = self._model.generate(**encoded, **options)
        latency = time.perf_counter() - started
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        generations = []
        for row in new_tokens.tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            row = [t for t in row if t != tokenizer.pad_token_id]
            text = tokenizer.decode(row, skip_special_tokens=True)
            for stop in config.stop:
                cut = text.find(stop)
                if cut >= 0:
                    text = text[:cut]
            generations.append(
                Generation(
                    text=text, latency_s=latency / len(records), output_tokens=len(row), batch_size=len(records)
                )
            )
        return generations

    def close(self) -> None:
        self._model = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
