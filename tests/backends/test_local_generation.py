"""LocalGenerator: batching does not change greedy answers; adapters load on their base; stop strings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneline.backends.local.generation import LocalGenerator
from tuneline.config import GenerationConfig
from tuneline.errors import ConfigError
from tuneline.records import ChatRecord


@pytest.fixture(scope="module")
def generator(chatty_model_dir: Path) -> LocalGenerator:
    return LocalGenerator(chatty_model_dir, label="base")


def test_batched_greedy_equals_one_at_a_time(generator: LocalGenerator, ticket_records: list[ChatRecord]) -> None:
    # Prompts of different lengths, so that the batch really is left-padded.
    prompts = ticket_records[:6]
    batched = generator.generate(prompts, GenerationConfig(max_new_tokens=12, batch_size=6))
    single = generator.generate(prompts, GenerationConfig(max_new_tokens=12, batch_size=1))
    assert all(len(g.text) > 4 for g in batched)
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.output_tokens for g in batched] == [g.output_tokens for g in single]
    assert all(g.output_tokens is not None and g.output_tokens <= 12 for g in batched)
    assert all(g.latency_s > 0 for g in batched)


@pytest.fixture(scope="module")
def chatty_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its special tokens' (tied) embeddings zeroed: their logits are then 0
    while some ordinary token's is almost surely positive, so it writes text instead of stopping
    or emitting role tokens at once."""
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with torch.no_grad():
        for token_id in tokenizer.all_special_ids:
            model.get_input_embeddings().weight[token_id] = 0
    path = tmp_path_factory.mktemp("chatty")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_stop_sequences_cut_the_text(generator: LocalGenerator, ticket_records: list[ChatRecord]) -> None:
    free = generator.generate(ticket_records[:1], GenerationConfig(max_new_tokens=16))[0]
    assert free.output_tokens == 16 and len(free.text) > 4
    stop = free.text[2:4]
    cut = generator.generate(ticket_records[:1], GenerationConfig(max_new_tokens=16, stop=[stop]))[0]
    assert cut.text == free.text[: free.text.find(stop)]
    assert cut.output_tokens is not None and cut.output_tokens < 16


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_adapter_is_loaded_on_its_base(tiny_model_dir: Path, tmp_path: Path, ticket_records: list[ChatRecord]) -> None:
    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    with pytest.raises(ConfigError, match="is a LoRA adapter but no base model was given"):
        LocalGenerator(tmp_path / "adapter")
    adapted = LocalGenerator(tmp_path / "adapter", base_model=tiny_model_dir)
    base = LocalGenerator(tiny_model_dir)
    config = GenerationConfig(max_new_tokens=8)
    # A non-zero adapter changes the answers: the adapter really was applied.
    assert [g.text for g in adapted.generate(ticket_records[:4], config)] != [
        g.text for g in base.generate(ticket_records[:4], config)
    ]
    adapted.close()
    with pytest.raises(ConfigError, match="was closed"):
        adapted.generate(ticket_records[:1], config)
