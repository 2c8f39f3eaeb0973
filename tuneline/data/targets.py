"""Every tuning target's data limits and training prices, declared in one place.

The prepare stage checks records and files against these numbers so that a job never fails hours
in on a limit that could have been checked in seconds. Sources: the AWS Bedrock user guide's
"Prepare your training datasets" pages (Claude 3 Haiku, Amazon Nova) and the Bedrock pricing page;
see ``PRICES_TAKEN_ON`` for when the prices were copied. Check them before relying on an estimate.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneline.config import Target
from tuneline.records import (
    ChatRecord,
    Record,
    RecordFormat,
    RecordKind,
    RftRecord,
    record_to_dict,
    to_bedrock,
    to_bedrock_rft,
    to_nova,
)

__all__ = [
    "PRICES_TAKEN_ON",
    "TargetLimits",
    "estimate_cost_usd",
    "limits_for",
    "targets_that_train",
    "training_shape",
]

PRICES_TAKEN_ON = "2025-06-01"


class TargetLimits(BaseModel):
    """What one target accepts. ``None`` means no limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target: Target
    output_format: RecordFormat
    kinds: frozenset[RecordKind] = Field(description="The record kinds the target trains.")
    content: frozenset[str] = Field(
        description="What turns may hold: text, tools (calls and results), reasoning, image, video, document."
    )
    content_by_kind: dict[RecordKind, frozenset[str]] = Field(
        default_factory=dict, description="Where one kind's training shape holds less than `content`."
    )
    min_train_records: int = 1
    max_train_records: int | None = None
    min_validation_records: int | None = Field(
        default=None, description="When a validation split is written at all, it needs this many."
    )
    max_validation_records: int | None = None
    max_total_records: int | None = Field(default=None, description="train + validation together")
    max_tokens_per_record: int | None = None
    chars_per_token: float = Field(default=3.0, description="Token estimate where no tokenizer is local.")
    reserved_strings: tuple[str, ...] = ()
    default_epochs: float = 1.0
    price_per_1k_training_tokens_usd: float | None = None
    price_note: str = ""


    def content_for(self, kind: RecordKind | None) -> frozenset[str]:
        """What records of ``kind`` may hold for this target."""
        return self.content_by_kind.get(kind, self.content) if kind is not None else self.content


_LIMITS: dict[Target, TargetLimits] = {
    Target.BEDROCK_CLAUDE_HAIKU: TargetLimits(
        target=Target.BEDROCK_CLAUDE_HAIKU,
        output_format=RecordFormat.BEDROCK,
        # Bedrock's Claude 3 Haiku customization: text-only conversations.
        kinds=frozenset({RecordKind.SFT}),
        content=frozenset({"text"}),
        min_train_records=32,
        max_train_records=10_000,
        min_validation_records=32,
        max_validation_records=1_000,
        max_total_records=10_000,
        max_tokens_per_record=32_000,
        # AWS's own data validator for Claude 3 Haiku estimates 3 characters per token.
        chars_per_token=3.0,
        # Claude's legacy prompt markers: Bedrock refuses training data containing them.
        reserved_strings=("\nHuman:", "\nAssistant:"),
        default_epochs=2,  # epochCount's default in the Bedrock API
        price_per_1k_training_tokens_usd=0.004,
        price_note="Claude 3 Haiku model customization, per 1,000 training tokens",
    ),
    Target.BEDROCK_NOVA: TargetLimits(
        target=Target.BEDROCK_NOVA,
        output_format=RecordFormat.NOVA,
        # Nova (bedrock-conversation-2024): tool use, reasoning and media by S3 location; RFT on
        # the Nova models that offer it (Nova Lite 2).
        kinds=frozenset({RecordKind.SFT, RecordKind.RFT}),
        content=frozenset({"text", "tools", "reasoning", "image", "video", "document"}),
        # Bedrock's RFT lines are OpenAI-style text messages (the rft-prepare-data page).
        content_by_kind={RecordKind.RFT: frozenset({"text"})},
        min_train_records=8,
        max_train_records=20_000,
        min_validation_records=8,
        max_validation_records=1_000,
        max_total_records=20_000,
        max_tokens_per_record=32_000,
        chars_per_token=3.0,
        default_epochs=2,
        price_per_1k_training_tokens_usd=0.001,
        price_note="Amazon Nova Micro model customization, per 1,000 training tokens (Lite and Pro cost more)",
    ),
    Target.LOCAL: TargetLimits(
        target=Target.LOCAL,
        output_format=RecordFormat.BEDROCK,
        # TRL: SFT, DPO (preference), KTO, GRPO (rft) and causal-LM pretraining; text and tools.
        kinds=frozenset(RecordKind),
        content=frozenset({"text", "tools", "reasoning"}),
        min_train_records=1,
        # The local backend truncates to its max_seq_length; prepare has no hard token limit.
        max_tokens_per_record=None,
        chars_per_token=4.0,
        default_epochs=1,
        price_per_1k_training_tokens_usd=None,
        price_note="local training has no per-token price",
    ),
}


def limits_for(target: Target) -> TargetLimits:
    return _LIMITS[Target(target)]


def training_shape(record: Record, limits: TargetLimits) -> dict[str, Any]:
    """``record`` as the target's trainer reads it: the local trainers read every kind's canonical
    record (``tuneline.records.record_to_dict``); Bedrock reads its RFT line, Nova's
    ``bedrock-conversation-2024`` or Claude's chat shape. Kept metadata has no place in Bedrock's
    SFT shapes: there it stays in the version's Parquet copy (``record``)."""
    if limits.target is Target.LOCAL:
        return record_to_dict(record)
    if isinstance(record, RftRecord):
        return to_bedrock_rft(record)
    if not isinstance(record, ChatRecord):
        raise ValueError(f"{limits.target.value} trains no {record.kind.value} records")
    return to_nova(record) if limits.output_format is RecordFormat.NOVA else to_bedrock(record)


def targets_that_train(*, kind: RecordKind | None = None, content: str | None = None) -> list[Target]:
    """The targets able to train records of ``kind`` holding ``content`` (for advice)."""
    return [
        t for t, lim in _LIMITS.items()
        if (kind is None or kind in lim.kinds) and (content is None or content in lim.content_for(kind))
    ]


def estimate_cost_usd(target: Target, training_tokens: int, epochs: float | None = None) -> float | None:
    """Training tokens x epochs x the target's price; ``None`` where the target has no price."""
    limits = limits_for(target)
    if limits.price_per_1k_training_tokens_usd is None:
        return None
    epochs = limits.default_epochs if epochs is None else epochs
    cost = training_tokens * epochs * limits.price_per_1k_training_tokens_usd / 1000
    return math.ceil(cost * 100) / 100
