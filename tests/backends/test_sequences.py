"""Assistant-only labels, packing, and that packed examples never see each other."""

from __future__ import annotations

from pathlib import Path

from tuneline.backends.local.hf_models import DEFAULT_CHAT_TEMPLATE, load_tokenizer
from tuneline.backends.local.sequences import IGNORE_INDEX, encode_record
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
