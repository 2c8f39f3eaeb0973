"""Packing on the TRL engine: TRL's padding-free collator (what ``packing: true`` uses) gives each
packed example the logits it gets alone -- no token attends across examples."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from tuneline.backends.local.hf_models import load_tokenizer
from tuneline.backends.local.sequences import encode_record
from tuneline.records import ChatRecord


def test_a_packed_batch_gives_each_example_its_own_logits(tiny_model_dir: Path, ticket_records: list[ChatRecord]) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [encode_record(r, tokenizer, 128) for r in ticket_records[:3]]
    rows = [{"input_ids": list(e.input_ids), "labels": list(e.labels)} for e in examples]
    batch = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)(rows)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    with torch.no_grad():
        # use_cache=False as in training: with a KV cache transformers does not derive the packed mask
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        offset = 0
        for e in examples:
            alone = model(input_ids=torch.tensor([e.input_ids])).logits[0]
            torch.testing.assert_close(packed[offset : offset + len(e)], alone, rtol=1e-4, atol=1e-4)
            offset += len(e)
        # Control: the same row read as one sequence (positions 0..n) does leak across examples.
        leaked = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
        later = slice(len(examples[0]), len(examples[0]) + len(examples[1]))
        assert not torch.allclose(leaked[later], packed[later], rtol=1e-4, atol=1e-4)
