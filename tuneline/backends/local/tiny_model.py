"""Build small Llama-style causal LMs locally: no hub download, a tokenizer trained here.

The demo, the tests and the benchmarks need a real Hugging Face model directory without network
access. :func:`build_tiny_model` writes one: a byte-level BPE tokenizer trained with the
``tokenizers`` library on a corpus you give (or a bare byte vocabulary when none is given),
wrapped as a ``PreTrainedTokenizerFast`` with a chat template, and a randomly initialised
``LlamaForCausalLM`` saved as safetensors. The result loads with ``AutoModelForCausalLM`` /
``AutoTokenizer`` like any other model directory.

The chat template renders each turn as ``<|role|>content<|end|>``; ``<|end|>`` is the
end-of-sequence token, so a model trained on it learns to stop after its answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

__all__ = [
    "BENCHMARK_1B_SIZE",
    "CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "TINY_SIZE",
    "build_model_from_config",
    "build_tiny_model",
    "build_tokenizer",
]

SPECIAL_TOKENS = ("<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>")
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)

TINY_SIZE: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}
"""The example's model: ~0.1M parameters plus embeddings; trains at tens of thousands of tokens/s on 2 CPU cores."""

BENCHMARK_1B_SIZE: dict[str, Any] = {
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": True,
}
"""Llama-3.2-1B's shape (with this tokenizer's vocabulary), for GPU benchmarks."""

_MANIFEST = "tuneline_build.json"
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def build_tokenizer(corpus: Iterable[str] | None = None, vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the chat template; merges learned from ``corpus``.

    Digits are split one by one so that numbers (order ids) are copied digit by digit rather than
    through merges that happen to exist for some numbers and not others. Without a corpus the
    vocabulary is the 256 bytes plus the special tokens.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size if corpus is not None else 0,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(list(corpus) if corpus is not None else [], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|end|>",
        pad_token="<|pad|>",
        additional_special_tokens=list(SPECIAL_TOKENS[2:]),
        chat_template=CHAT_TEMPLATE,
        padding_side="right",
        model_max_length=TINY_SIZE["max_position_embeddings"],
    )


def build_model_from_config(
    path: str | Path,
    config: LlamaConfig | Mapping[str, Any],
    tokenizer: PreTrainedTokenizerFast,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Save a randomly initialised Llama model of ``config`` with ``tokenizer`` into ``path``.

    ``config`` may be a ``LlamaConfig`` or the keyword arguments of one (e.g.
    :data:`BENCHMARK_1B_SIZE`); vocabulary size and special token ids come from the tokenizer.
    """
    path = Path(path)
    fields = dict(config.to_dict() if isinstance(config, LlamaConfig) else config)
    fields.update(
        vocab_size=len(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    llama_config = LlamaConfig(**{k: v for k, v in fields.items() if k not in ("architectures", "model_type")})
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config).to(dtype)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_model(
    path: str | Path,
    corpus: Iterable[str] | None = None,
    seed: int = 0,
    vocab_size: int = 1024,
    **size: Any,
) -> Path:
    """Build (or keep) a tiny randomly initialised Llama model and its tokenizer in ``path``.

    ``size`` overrides fields of :data:`TINY_SIZE`. Idempotent: when ``path`` already holds a
    complete model built from the same corpus, seed and size, nothing is rewritten.
    """
    path = Path(path)
    texts = list(corpus) if corpus is not None else None
    shape = {**TINY_SIZE, **size}
    recipe = {
        "seed": seed,
        "vocab_size": vocab_size,
        "size": shape,
        "corpus_sha256": None if texts is None else hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
    }
    manifest = path / _MANIFEST
    if manifest.is_file() and all((path / name).is_file() for name in _REQUIRED):
        if json.loads(manifest.read_text(encoding="utf-8")) == recipe:
            return path
    tokenizer = build_tokenizer(texts, vocab_size=vocab_size)
    tokenizer.model_max_length = shape["max_position_embeddings"]
    manifest.unlink(missing_ok=True)
    build_model_from_config(path, shape, tokenizer, seed=seed)
    # Written last: its presence means the directory is complete.
    manifest.write_text(json.dumps(recipe, indent=2, sort_keys=True), encoding="utf-8")
    return path
