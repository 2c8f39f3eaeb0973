"""The locally built tiny model: loads like any Hugging Face directory, and builds idempotently."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneline.backends.local.tiny_model import build_tiny_model


def test_loads_with_auto_classes_and_renders_chat(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, local_files_only=True, use_safetensors=True)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Where is order 12345?"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|user|>Where is order 12345?<|end|><|assistant|>"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids("<|end|>")
    assert tokenizer.pad_token == "<|pad|>"


def test_digits_are_single_tokens(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir, local_files_only=True)
    assert tokenizer.tokenize("98765")[-5:] == list("98765")


def test_build_is_idempotent_and_rebuilds_on_change(tmp_path: Path) -> None:
    corpus = ["Where is my order?", "Cancel order 123 please."]
    path = build_tiny_model(tmp_path / "m", corpus, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2)
    weights = path / "model.safetensors"
    first = weights.stat().st_mtime_ns
    build_tiny_model(path, corpus, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2)
    assert weights.stat().st_mtime_ns == first
    build_tiny_model(path, corpus, seed=1, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2)
    assert weights.stat().st_mtime_ns != first


@pytest.mark.parametrize("corpus", [None, ["a b c"]], ids=["bytes-only", "tiny-corpus"])
def test_any_text_round_trips(tmp_path: Path, corpus: list[str] | None) -> None:
    path = build_tiny_model(tmp_path / "m", corpus, hidden_size=16, intermediate_size=32, num_attention_heads=2, num_key_value_heads=2)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    text = "Ünïcode ✓ and {\"json\": 1}"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
