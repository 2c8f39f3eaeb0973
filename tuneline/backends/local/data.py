"""The canonical records of each kind from prepare, as the datasets TRL's trainers take.

- ``sft``: chat records, pre-tokenized here (``input_ids`` + ``labels``, assistant tokens only,
  :func:`tuneline.backends.local.sequences.encode_record`): TRL uses the labels as they are.
- ``dpo``: preference records -> conversational ``prompt`` / ``chosen`` / ``rejected``.
- ``kto``: KTO records -> ``prompt`` / ``completion`` (the last assistant turn) / ``label``.
- ``grpo``: RFT records -> ``prompt`` plus ``reference`` (the reference answer as JSON) for the
  graders that score each sampled completion.
- ``pretrain``: pretraining text, pre-tokenized (every token a target, eos at the end) and cut
  into windows of ``max_seq_length`` tokens: a long document is trained on whole, not truncated.

Lines carrying a ``kind`` are read with :func:`tuneline.records.record_from_dict`; lines in the
Bedrock, Nova or OpenAI chat shapes are chat (``sft``) records. Errors name the file and line.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tuneline.backends.local.chat_encoding import check_rendered, special_token_pattern
from tuneline.backends.local.hf_models import chat_messages, chat_tools
from tuneline.config import LOCAL_METHOD_KINDS
from tuneline.errors import BackendError
from tuneline.records import (
    ChatRecord,
    KtoRecord,
    PreferenceRecord,
    PretrainRecord,
    RftRecord,
    from_nova,
    from_openai,
    record_from_dict,
    record_texts,
)
from tuneline.storage.s3 import ObjectStore, local_path_or_none

__all__ = ["METHOD_KINDS", "check_no_typed_special_tokens", "check_template_renders", "pretrain_rows", "read_chat_jsonl", "read_records", "read_text", "sft_rows", "trl_rows"]

_log = logging.getLogger(__name__)

_MODEL_OF_KIND = {m.kind: m for m in (ChatRecord, PreferenceRecord, KtoRecord, RftRecord, PretrainRecord)}
METHOD_KINDS: dict[str, type] = {method: _MODEL_OF_KIND[kind] for method, kind in LOCAL_METHOD_KINDS.items()}
"""The record model each ``tune.method`` reads (the kinds are ``tuneline.config.LOCAL_METHOD_KINDS``)."""


def read_text(uri: str, store: ObjectStore) -> str:
    local = local_path_or_none(uri)
    return local.read_text(encoding="utf-8") if local is not None else store.get_bytes(uri).decode("utf-8")


def _parse(obj: dict[str, Any]) -> Any:
    if "kind" in obj:
        return record_from_dict(obj)
    if "schemaVersion" in obj:
        return from_nova(obj)
    if any(m.get("role") == "system" for m in obj.get("messages", [])):
        return from_openai(obj)
    return ChatRecord.model_validate(obj)


def read_records(text: str, source: str, method: str = "sft") -> list[Any]:
    """The records of a split; each must be of the kind ``method`` trains on."""
    expected = METHOD_KINDS[method]
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = _parse(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise BackendError(f"{source} line {number} is not a training record: {exc}") from exc
        if not isinstance(record, expected):
            raise BackendError(
                f"{source} line {number} is a {record.kind.value!r} record, but tune.method {method!r} trains on "
                f"{expected.kind.value!r} records: prepare data of that kind, or pick the method that trains this one"
            )
        records.append(record)
    return records


def read_chat_jsonl(text: str, source: str) -> list[ChatRecord]:
    """Chat records from JSONL in the canonical, Bedrock, Nova or OpenAI shape; errors name the line."""
    return read_records(text, source, "sft")


def sft_rows(records: list[ChatRecord], tokenizer: Any, max_length: int, split: str) -> list[dict[str, list[int]]]:
    """Pre-tokenized rows with assistant-only labels; rows with nothing to learn are dropped, counted."""
    from tuneline.backends.local.sequences import IGNORE_INDEX, encode_record

    examples = [encode_record(r, tokenizer, max_length) for r in records]
    cut = sum(e.truncated for e in examples)
    if cut:
        _log.warning("%d of %d %s examples are longer than max_seq_length=%d tokens and were cut",
                     cut, len(examples), split, max_length)
    rows = [
        {"input_ids": list(e.input_ids), "labels": list(e.labels)}
        for e in examples
        if any(label != IGNORE_INDEX for label in e.labels)
    ]
    if len(rows) < len(examples):
        _log.warning("%d %s examples have no assistant tokens left and are skipped", len(examples) - len(rows), split)
    return rows


def check_template_renders(records: list[Any], tokenizer: Any, source: str) -> None:
    """TRL renders DPO, KTO and GRPO rows with the chat template itself: a record whose tool
    calls, tools or reasoning the template drops is refused here, as SFT's encoder refuses it."""
    for number, record in enumerate(records, start=1):
        if isinstance(record, PreferenceRecord):
            conversations = [(*record.prompt, *record.chosen), (*record.prompt, *record.rejected)]
        else:
            conversations = [record.messages]
        for turns in conversations:
            if not record.tools and not any(m.tool_calls or m.reasoning is not None for m in turns):
                continue
            text = tokenizer.apply_chat_template(
                chat_messages(turns, record.system), tools=chat_tools(record.tools), tokenize=False
            )
            check_rendered(text, turns, record.tools, f"{source} record {number}")


def check_no_typed_special_tokens(records: list[Any], tokenizer: Any, source: str, method: str) -> None:
    """Refuse a DPO, KTO or GRPO record whose text holds one of the tokenizer's special tokens.

    SFT and pretraining tokenize contents so that a typed ``<|end|>`` stays characters. TRL's
    other trainers render and tokenize the conversation themselves, where the typed text would
    become the control token -- a forged turn boundary the model then learns from. So the record
    is refused, naming where, rather than trained on something its author did not write.
    """
    pattern = special_token_pattern(tokenizer)
    if pattern is None:
        return
    for number, record in enumerate(records, start=1):
        texts = [("system", record.system or "")] + [
            (f.field, f.text) for f in record_texts(record) if f.role != "metadata"  # metadata is not trained on
        ]
        for field, text in texts:
            if found := pattern.search(text):
                raise BackendError(
                    f"{source} record {number} {field}: contains {found.group()!r}, one of the tokenizer's special "
                    f"tokens; TRL's {method} trainer tokenizes the rendered conversation, where it would become a "
                    "control token (a turn boundary nobody wrote), so the record is refused. The sft and pretrain "
                    "methods keep such text as text"
                )


def pretrain_rows(records: list[PretrainRecord], tokenizer: Any, max_length: int) -> list[dict[str, list[int]]]:
    """Each text tokenized as text (a typed ``<|end|>`` stays characters), eos appended, and cut
    into windows of ``max_length`` tokens; labels are the ids (the trainer shifts them)."""
    from tuneline.backends.local.sequences import IGNORE_INDEX

    rows = []
    for record in records:
        ids = tokenizer(record.text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = [*ids, tokenizer.eos_token_id]
        for start in range(0, len(ids), max_length):
            window = ids[start : start + max_length]
            if len(window) > 1:  # a one-token window predicts nothing
                rows.append({"input_ids": window, "labels": [IGNORE_INDEX, *window[1:]]})
    return rows


def trl_rows(method: str, records: list[Any]) -> list[dict[str, Any]]:
    """Conversational rows for TRL's DPO, KTO and GRPO trainers."""
    if method == "dpo":
        return [
            {
                "prompt": chat_messages(r.prompt, r.system),
                "chosen": chat_messages(r.chosen),
                "rejected": chat_messages(r.rejected),
            }
            for r in records
        ]
    if method == "kto":
        return [
            {
                "prompt": chat_messages(r.messages[:-1], r.system),
                "completion": chat_messages(r.messages[-1:]),
                "label": bool(r.label),
            }
            for r in records
        ]
    if method == "grpo":
        return [
            {"prompt": chat_messages(r.messages, r.system), "reference": json.dumps(r.reference_answer)}
            for r in records
        ]
    raise ValueError(f"no conversational rows for method {method!r}")
