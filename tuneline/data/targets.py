"""Every tuning target's data limits, declared in one place.

The prepare stage checks records and files against these numbers so that a job never fails hours
in on a limit that could have been checked in seconds. Sources: the AWS Bedrock user guide's
"Prepare your training datasets" pages (Claude 3 Haiku, Amazon Nova, Amazon Titan Text).

Prices are not here: a target names the base model whose price stands for it
(``price_model_id``), and the price comes from the one dated, overridable table that the Bedrock
dry run reads too (:mod:`tuneline.backends.bedrock.prices`, which depends on pydantic only, as
the model table does for ``tuneline.config``).
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tuneline.backends.bedrock.models import BEDROCK_MODELS, BedrockModelSpec
from tuneline.backends.bedrock.prices import DEFAULT_PRICES, PriceTable
from tuneline.config import Target
from tuneline.records import (
    ChatRecord,
    PretrainRecord,
    PromptRecord,
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
    "TargetLimits",
    "estimate_cost_usd",
    "limits_for",
    "targets_that_train",
    "training_price",
    "training_shape",
]


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
    max_messages_per_record: int | None = Field(
        default=None, description="Turns a record may have (below data.max_messages_per_record); None: no limit."
    )
    chars_per_token: float = Field(default=3.0, description="Token estimate where no tokenizer is local.")
    reserved_strings: tuple[str, ...] = ()
    default_epochs: float = 1.0
    price_model_id: str | None = Field(
        default=None, description="The base model whose training price in the price table the estimate uses."
    )
    price_note: str = ""

    def content_for(self, kind: RecordKind | None) -> frozenset[str]:
        """What records of ``kind`` may hold for this target."""
        return self.content_by_kind.get(kind, self.content) if kind is not None else self.content


def _aws_limits(model_id: str) -> dict[str, Any]:
    """A Bedrock target's record limits and default epochs, read from the model table (the one
    place AWS's numbers are written, which the Bedrock backend and dry run check as well): those
    of ``model_id``, the model the target's records were specified for."""
    spec: BedrockModelSpec = BEDROCK_MODELS[model_id]
    counts = spec.model_dump(include={
        "max_train_records", "min_validation_records", "max_validation_records", "max_total_records",
        "max_tokens_per_record",
    })
    return {
        **counts,
        "min_train_records": spec.min_train_records or 1,
        "default_epochs": float(spec.hyperparameters["epochCount"].default or 1),
        "price_model_id": model_id,
    }


_LIMITS: dict[Target, TargetLimits] = {
    Target.BEDROCK_CLAUDE_HAIKU: TargetLimits(
        target=Target.BEDROCK_CLAUDE_HAIKU,
        output_format=RecordFormat.BEDROCK,
        # Bedrock's Claude 3 Haiku (and Llama) fine-tuning: text-only conversations.
        kinds=frozenset({RecordKind.SFT}),
        content=frozenset({"text"}),
        **_aws_limits("anthropic.claude-3-haiku-20240307-v1:0:200k"),
        # AWS's own data validator for Claude 3 Haiku estimates 3 characters per token.
        chars_per_token=3.0,
        # Claude's legacy prompt markers: Bedrock refuses training data containing them.
        reserved_strings=("\nHuman:", "\nAssistant:"),
        price_note="Claude 3 Haiku model customization, per 1,000 training tokens",
    ),
    Target.BEDROCK_NOVA: TargetLimits(
        target=Target.BEDROCK_NOVA,
        output_format=RecordFormat.NOVA,
        # Nova (bedrock-conversation-2024): tool use, reasoning and media by S3 location; RFT on
        # the Nova models that offer it (Nova Lite 2); prompts for distillation.
        kinds=frozenset({RecordKind.SFT, RecordKind.RFT, RecordKind.PROMPT}),
        content=frozenset({"text", "tools", "reasoning", "image", "video", "document"}),
        # Bedrock's RFT lines are OpenAI-style text messages (the rft-prepare-data page);
        # distillation is text to text (the distillation-prepare-datasets page).
        content_by_kind={RecordKind.RFT: frozenset({"text"}), RecordKind.PROMPT: frozenset({"text"})},
        **_aws_limits("amazon.nova-micro-v1:0:128k"),
        chars_per_token=3.0,
        price_note="Amazon Nova Micro model customization, per 1,000 training tokens (Lite and Pro cost more)",
    ),
    Target.BEDROCK_DISTILLATION: TargetLimits(
        target=Target.BEDROCK_DISTILLATION,
        output_format=RecordFormat.NOVA,
        # Distillation into a Claude or Llama student (AWS's distillation-data-prep-option-1 page):
        # every line bedrock-conversation-2024 -- a prompt, or a prompt and the answer wanted --
        # text only, and single-turn: one user turn (and its answer). The record counts are the
        # student's, checked by the Bedrock backend and dry run.
        kinds=frozenset({RecordKind.SFT, RecordKind.PROMPT}),
        content=frozenset({"text"}),
        max_messages_per_record=2,
        chars_per_token=3.0,
        # Claude's legacy prompt markers: refused in Claude's training data.
        reserved_strings=("\nHuman:", "\nAssistant:"),
        price_note="distillation bills the teacher's inference and the student's training; no estimate here",
    ),
    Target.BEDROCK_TITAN: TargetLimits(
        target=Target.BEDROCK_TITAN,
        output_format=RecordFormat.PRETRAIN,
        # Continued pre-training of Amazon Titan Text G1 - Express / Lite: {"input": text} lines.
        # (Titan fine-tuning reads prompt/completion lines, which Tuneline does not write.)
        kinds=frozenset({RecordKind.PRETRAIN}),
        content=frozenset({"text"}),
        # No Titan training price in the price table: an estimate needs one given (--prices).
        **_aws_limits("amazon.titan-text-express-v1:0:8k"),
        chars_per_token=3.0,
        price_note="Amazon Titan Text G1 - Express model customization, per 1,000 training tokens",
    ),
    Target.LOCAL: TargetLimits(
        target=Target.LOCAL,
        output_format=RecordFormat.BEDROCK,
        # TRL: SFT, DPO (preference), KTO, GRPO (rft) and causal-LM pretraining; text and tools.
        # Prompts alone train nothing locally (no teacher answers them).
        kinds=frozenset(RecordKind) - {RecordKind.PROMPT},
        content=frozenset({"text", "tools", "reasoning"}),
        min_train_records=1,
        # The local backend truncates to its max_seq_length; prepare has no hard token limit.
        max_tokens_per_record=None,
        chars_per_token=4.0,
        default_epochs=1,
        price_note="local training has no per-token price",
    ),
}


def limits_for(target: Target) -> TargetLimits:
    return _LIMITS[Target(target)]


def training_shape(record: Record, limits: TargetLimits) -> dict[str, Any]:
    """``record`` as the target's trainer reads it: the local trainers read every kind's canonical
    record (``tuneline.records.record_to_dict``); Bedrock reads its RFT line, its continued
    pre-training line ``{"input": text}``, ``bedrock-conversation-2024`` for distillation prompts
    (every student), Nova's ``bedrock-conversation-2024`` or Claude's chat shape. Kept metadata has
    no place in Bedrock's shapes but RFT's: there it stays in the version's Parquet copy
    (``record``)."""
    if limits.target is Target.LOCAL:
        return record_to_dict(record)
    if record.kind not in limits.kinds:
        raise ValueError(f"{limits.target.value} trains no {record.kind.value} records")
    if isinstance(record, RftRecord):
        return to_bedrock_rft(record)
    if isinstance(record, PretrainRecord):
        return {"input": record.text}
    if isinstance(record, PromptRecord):
        return to_nova(record)
    if not isinstance(record, ChatRecord):
        raise ValueError(f"{limits.target.value} trains no {record.kind.value} records")
    return to_nova(record) if limits.output_format is RecordFormat.NOVA else to_bedrock(record)


def targets_that_train(*, kind: RecordKind | None = None, content: str | None = None) -> list[Target]:
    """The targets able to train records of ``kind`` holding ``content`` (for advice)."""
    return [
        t for t, lim in _LIMITS.items()
        if (kind is None or kind in lim.kinds) and (content is None or content in lim.content_for(kind))
    ]


def training_price(limits: TargetLimits, prices: PriceTable = DEFAULT_PRICES) -> float | None:
    """The price of training on 1,000 tokens for the target, from the price table; ``None`` where
    the target names no model or the table has no price for it."""
    if limits.price_model_id is None:
        return None
    return prices.training_per_1k_tokens.get(limits.price_model_id)


def estimate_cost_usd(
    target: Target, training_tokens: int, epochs: float | None = None, prices: PriceTable = DEFAULT_PRICES
) -> float | None:
    """Training tokens x epochs x the target's price (rounded up to the cent); ``None`` where the
    price table has no price for the target."""
    limits = limits_for(target)
    price = training_price(limits, prices)
    if price is None:
        return None
    epochs = limits.default_epochs if epochs is None else epochs
    cost = training_tokens * epochs * price / 1000
    return math.ceil(cost * 100) / 100
