"""Assistant-only labels, packing, and that packed examples never see each other."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma2Config

from tuneline.backends.hf_models import DEFAULT_CHAT_TEMPLATE, load_tokenizer
from tuneline.backends.sequences import (
    IGNORE_INDEX,
    Batch,
    collate,
    encode_record,
    loss_sum,
    pack_examples,
    split_output_layer,
)
from tuneline.records import ChatRecord, Message

KNOWN = ChatRecord(
    system="Triage this support ticket as JSON.",
    messages=(
        Message(role="user", content="Where is order #12345?"),
        Message(role="assistant", content='{"intent":"order_status","priority":"medium","order_id":"12345"}'),
    ),
)
MULTI_TURN = ChatRecord(
    messages=(
        Message(role="user", content="Hi"),
        Message(role="assistant", content="Hello, how can I help?"),
        Message(role="user", content="Cancel order 55555."),
        Message(role="assistant", content="Done."),
    )
)


def _labelled_text(tokenizer, example) -> str:
    return tokenizer.decode([t for t in example.labels if t != IGNORE_INDEX])


def test_labels_are_the_assistant_answer_and_end_token_only(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    example = encode_record(KNOWN, tokenizer, max_length=512)
    prompt = tokenizer.apply_chat_template(
        [{"role": "system", "content": KNOWN.system}, {"role": "user", "content": KNOWN.messages[0].content}],
        tokenize=False,
        add_generation_prompt=True,
    )
    prompt_tokens = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert all(label == IGNORE_INDEX for label in example.labels[:prompt_tokens])
    assert list(example.labels[prompt_tokens:]) == list(example.input_ids[prompt_tokens:])
    assert _labelled_text(tokenizer, example) == KNOWN.answer + "<|end|>"


def test_every_assistant_turn_is_labelled_and_no_user_turn(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    example = encode_record(MULTI_TURN, tokenizer, max_length=512)
    assert _labelled_text(tokenizer, example) == "Hello, how can I help?<|end|>Done.<|end|>"


def test_default_template_labels_answer_and_eos(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    example = encode_record(KNOWN, tokenizer, max_length=512)
    assert tokenizer.decode(example.input_ids).startswith("### System:\nTriage")
    assert _labelled_text(tokenizer, example) == KNOWN.answer + "<|end|>"


def test_long_examples_are_cut_and_flagged(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    example = encode_record(KNOWN, tokenizer, max_length=10)
    assert len(example) == 10 and example.truncated


@pytest.mark.parametrize(
    ("lengths", "row_length", "expected"),
    [
        ([5, 5, 5], 10, [[0, 1], [2]]),
        ([6, 6, 4, 4], 10, [[0, 2], [1, 3]]),
        ([10, 1], 10, [[0], [1]]),
    ],
    ids=["fill-in-order", "first-fit-backfills", "exact-fit"],
)
def test_pack_examples_first_fit(lengths: list[int], row_length: int, expected: list[list[int]]) -> None:
    assert pack_examples(lengths, row_length) == expected


def test_pack_refuses_an_example_longer_than_a_row() -> None:
    with pytest.raises(ValueError, match="example 1 has 11 tokens"):
        pack_examples([3, 11], 10)


def test_packed_row_gives_each_example_the_logits_it_gets_alone(
    tiny_model_dir: Path, ticket_records: list[ChatRecord]
) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    examples = [encode_record(r, tokenizer, 128) for r in ticket_records[:3]]
    packed = collate([examples], tokenizer.pad_token_id).to(torch.device("cpu"), torch.float32)
    assert packed.attention_mask.dim() == 4
    with torch.no_grad():
        packed_logits = model(**packed.model_inputs(), use_cache=False).logits[0]
        offset = 0
        for example in examples:
            alone = collate([[example]], tokenizer.pad_token_id).to(torch.device("cpu"), torch.float32)
            alone_logits = model(**alone.model_inputs(), use_cache=False).logits[0]
            torch.testing.assert_close(
                packed_logits[offset : offset + len(example)], alone_logits, atol=1e-5, rtol=1e-4
            )
            offset += len(example)


def test_packing_without_the_mask_would_leak(tiny_model_dir: Path, ticket_records: list[ChatRecord]) -> None:
    # The control for the test above: with a plain causal mask the second example sees the first.
    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    first, second = (encode_record(r, tokenizer, 128) for r in ticket_records[:2])
    ids = torch.tensor([first.input_ids + second.input_ids])
    with torch.no_grad():
        leaky = model(input_ids=ids, use_cache=False).logits[0, len(first) :]
        alone = model(input_ids=torch.tensor([second.input_ids]), use_cache=False).logits[0]
    assert not torch.allclose(leaky, alone, atol=1e-3)


def test_padded_batch_counts_real_and_target_tokens(
    tiny_model_dir: Path, ticket_records: list[ChatRecord]
) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    examples = [encode_record(r, tokenizer, 128) for r in ticket_records[:4]]
    batch = collate([[e] for e in examples], tokenizer.pad_token_id)
    assert batch.attention_mask.dim() == 2
    assert batch.tokens == sum(len(e) for e in examples) == int(batch.attention_mask.sum())
    assert (
        batch.target_tokens
        == sum(e.target_tokens for e in examples)
        == int((batch.labels != IGNORE_INDEX).sum())
    )


def _batch(examples, packed: bool) -> Batch:
    rows = [examples[:3], examples[3:6]] if packed else [[e] for e in examples[:6]]
    return collate(rows, pad_token_id=0).to(torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_loss_on_labelled_positions_only_equals_the_full_logits_loss(
    tiny_model_dir: Path, ticket_records: list[ChatRecord], packed: bool
) -> None:
    tokenizer = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    batch = _batch([encode_record(r, tokenizer, 128) for r in ticket_records[:6]], packed)
    split = split_output_layer(model, batch)
    assert split is not None

    results = []
    for used in (None, split):
        model.zero_grad()
        loss = loss_sum(model, batch, used)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    (full_loss, full_grads), (split_loss, split_grads) = results
    torch.testing.assert_close(split_loss, full_loss, rtol=1e-5, atol=1e-5)
    for full, part in zip(full_grads, split_grads, strict=True):
        torch.testing.assert_close(part, full, rtol=1e-4, atol=1e-6)


def test_the_split_is_refused_for_a_model_that_transforms_its_logits(
    tiny_model_dir: Path, ticket_records: list[ChatRecord]
) -> None:
    # Gemma 2 soft-caps its logits after the output layer: decoder + head alone would be wrong
    # once logits grow, though a fresh model's small logits are almost unchanged by the cap.
    torch.manual_seed(0)
    config = Gemma2Config(
        vocab_size=1024,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        attn_logit_softcapping=None,
        final_logit_softcapping=30.0,
    )
    gemma = AutoModelForCausalLM.from_config(config).eval()
    llama = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = load_tokenizer(tiny_model_dir)
    batch = _batch([encode_record(r, tokenizer, 128) for r in ticket_records[:6]], packed=False)
    assert split_output_layer(gemma, batch) is None
    assert split_output_layer(llama, batch) is not None
